#!/usr/bin/env bash
# The gateway end to end, on this machine, with no API keys:
#   OpenAI SDK -> pointsman serve --http-listen -> upstream (the stub)
#   -> feedback -> store export -> train router --from-store -> reload.
# The upstream is tests/stub_upstream.py (it echoes the last user message);
# point upstreams.toml at OpenAI, vLLM or Ollama instead (docs/GATEWAY.md).
# Needs: target/release/pointsman (cargo build --release) and the venv
# target/py-serve with `openai` (scripts/test creates both).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${POINTSMAN:-target/release/pointsman}
py=${PYTHON:-target/py-serve/bin/python}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# 1. An upstream for every catalog model (here all the stub's `stub-ok`).
python3 tests/stub_upstream.py > "$work/stub.out" &
pids+=($!)
until grep -q LISTENING "$work/stub.out" 2>/dev/null; do sleep 0.1; done
stub_port=$(awk '{print $2}' "$work/stub.out")
catalog=models/catalogs/routerbench.toml
for model in $(sed -n 's/^name = "\(.*\)"/\1/p' "$catalog"); do
    cat >> "$work/upstreams.toml" <<TOML
[[upstream]]
model = "$model"
kind = "openai"
base_url = "http://127.0.0.1:$stub_port/v1"
upstream_model = "stub-ok"

TOML
done

# 2. Pointsman with the HTTP gateway. The router artifact is a copy, so
#    that step 5 can replace it and reload.
cp models/router/routerbench.json "$work/router.json"
"$bin" serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --catalog "$catalog" --router "$work/router.json" \
    --store "$work/outcomes.db" --upstreams "$work/upstreams.toml" > "$work/serve.out" &
serve_pid=$!
pids+=($serve_pid)
until grep -q '"http"' "$work/serve.out" 2>/dev/null; do sleep 0.2; done
http=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$work/serve.out" | head -1)
echo "gateway on http://$http"

# 3. The application: the OpenAI SDK, with base_url pointed at Pointsman,
#    then a quality score per answer to /v1/feedback.
"$py" examples/gateway/client.py "http://$http"

# 4. What was logged: decisions with their calls and outcomes.
"$bin" store export --store "$work/outcomes.db" > "$work/export.jsonl"
echo "store export: $(wc -l < "$work/export.jsonl") decisions with outcomes"
head -1 "$work/export.jsonl" | "$py" -c 'import json,sys; r=json.loads(sys.stdin.read()); print("  first:", r["chosen_model"], {m: o["score"] for m, o in r["outcomes"].items()}, [(c["model"], c["error_class"], c["output_tokens"]) for c in r["calls"]])'

# 5. Retrain the router on the logged traffic and reload it (SIGHUP).
"$bin" train router --from-store "$work/outcomes.db" --out "$work/retrained.json" --epochs 50
cp "$work/retrained.json" "$work/router.json"
kill -HUP "$serve_pid"
sleep 1
"$py" - "http://$http" <<'PY'
import sys
try:
    import httpx2 as httpx
except ImportError:
    import httpx
d = httpx.post(sys.argv[1] + "/v1/route", json={"prompt": "What is 2 + 2?"}).json()
print("after reload:", d["versions"]["router_artifact"], "generation", d["versions"]["generation"], "->", d["model"])
assert d["versions"]["generation"] == 2, d["versions"]
PY
echo "e2e: ok"
