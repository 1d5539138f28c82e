#!/usr/bin/env bash
# Generates the Python gRPC stubs from proto/ into examples/python/gen/ (or $1).
# Needs grpcio-tools (pip install -r examples/python/requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/gen}"
mkdir -p "$out"
"${PYTHON:-python3}" -m grpc_tools.protoc -I "$here/../../proto" \
  --python_out="$out" --grpc_python_out="$out" \
  "$here/../../proto/pointsman/v1/router.proto"
touch "$out/pointsman/__init__.py" "$out/pointsman/v1/__init__.py"
echo "generated stubs in $out"
