#!/usr/bin/env python3
"""Spearman of the heads' predicted difficulty against a set's per-prompt
failure rate (1 - mean score across the models that answered), overall.

An outside check of the difficulty head on outcome data it never trained
on, e.g. AlpacaEval's open-ended instructions (CC BY-NC, evaluation only;
built by scripts/build_alpaca_eval.py into target/eval-data/):

    python3 scripts/difficulty_vs_outcomes.py target/eval-data/alpaca_eval.jsonl \
        [--heads models/heads/task-difficulty.safetensors] [more classify flags, e.g. --model-dir DIR]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a) ** 0.5
    vb = sum((y - mb) ** 2 for y in b) ** 0.5
    return cov / (va * vb) if va and vb else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path)
    ap.add_argument("--heads", default="models/heads/task-difficulty.safetensors")
    ap.add_argument("--binary", default=str(ROOT / "target/release/pointsman"))
    args, extra = ap.parse_known_args()  # the rest goes to `pointsman classify`
    truth = {}
    with open(args.records) as f:
        for n, line in enumerate(f, 1):
            r = json.loads(line)
            scores = [o["score"] for o in r.get("outcomes", {}).values()]
            if not scores:
                continue
            truth[r["id"]] = 1 - sum(scores) / len(scores)
    out = subprocess.run(
        [args.binary, "classify", "--input", str(args.records), "--heads", args.heads, *extra],
        capture_output=True, text=True, cwd=ROOT,
    )
    if out.returncode != 0:
        sys.exit(f"classify failed: {out.stderr[-2000:]}")
    pred, tru = [], []
    for line in out.stdout.splitlines():
        p = json.loads(line)
        if p["id"] in truth:
            pred.append(p["difficulty"])
            tru.append(truth[p["id"]])
    rho = pearson(ranks(pred), ranks(tru))
    print(f"{args.records.name}: n {len(pred)}, heads {args.heads}: Spearman {rho:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
