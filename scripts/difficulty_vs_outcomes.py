#!/usr/bin/env python3
"""Spearman of a predicted difficulty against a set's per-prompt failure
rate (1 - mean score across the models that answered), overall and within
each of the set's sources.

The difficulty is the heads' (`pointsman classify`), or with
`--predictions FILE` the router's own: 1 - its mean P(success) over the
catalog, from `pointsman eval --predictions FILE` (each row's out-of-fold
estimate, so a fair held-out number; the success model learned it from
the set's other rows' outcomes).

An outside check on outcome data the heads never trained on, e.g.
AlpacaEval's open-ended instructions (CC BY-NC, evaluation only; built by
scripts/build_alpaca_eval.py into target/eval-data/):

    python3 scripts/difficulty_vs_outcomes.py target/eval-data/alpaca_eval.jsonl \
        [--heads models/heads/task-difficulty.safetensors] [more classify flags, e.g. --model-dir DIR]
    python3 scripts/difficulty_vs_outcomes.py target/eval-data/alpaca_eval.jsonl --predictions P.jsonl
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


def spearman(a, b):
    return pearson(ranks(a), ranks(b))


def heads_difficulty(args, extra):
    out = subprocess.run(
        [args.binary, "classify", "--input", str(args.records[0]), "--heads", args.heads, *extra],
        capture_output=True, text=True, cwd=ROOT,
    )
    if out.returncode != 0:
        sys.exit(f"classify failed: {out.stderr[-2000:]}")
    return {p["id"]: p["difficulty"] for p in map(json.loads, out.stdout.splitlines())}


def router_difficulty(path):
    pred = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                pred[row["id"]] = 1 - sum(row["p"].values()) / len(row["p"])
            except (ValueError, KeyError, ZeroDivisionError) as e:
                sys.exit(f"{path}:{n}: not an `eval --predictions` line ({e})")
    return pred


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path, nargs="+", help="outcome records (several with --predictions)")
    ap.add_argument("--heads", default="models/heads/task-difficulty.safetensors")
    ap.add_argument("--predictions", type=Path,
                    help="the router's difficulty from `pointsman eval --predictions FILE` instead of the heads'")
    ap.add_argument("--binary", default=str(ROOT / "target/release/pointsman"))
    args, extra = ap.parse_known_args()  # the rest goes to `pointsman classify`
    truth = {}
    for path in args.records:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                scores = [o["score"] for o in r.get("outcomes", {}).values()]
                if not scores:
                    continue
                truth[r["id"]] = (r.get("source", path.stem), 1 - sum(scores) / len(scores))
    if args.predictions:
        if extra:
            sys.exit(f"unexpected arguments with --predictions: {extra}")
        pred, what = router_difficulty(args.predictions), f"router {args.predictions}"
    elif len(args.records) > 1:
        sys.exit("the heads' difficulty reads one records file (`pointsman classify --input`)")
    else:
        pred, what = heads_difficulty(args, extra), f"heads {args.heads}"
    by_source = {}
    for i, d in pred.items():
        if i in truth:
            source, failure = truth[i]
            by_source.setdefault(source, ([], []))
            by_source[source][0].append(d)
            by_source[source][1].append(failure)
    every = [x for p, _ in by_source.values() for x in p], [x for _, t in by_source.values() for x in t]
    names = ", ".join(p.name for p in args.records)
    print(f"{names}: n {len(every[0])}, {what}: Spearman {spearman(*every):.3f}")
    if len(by_source) > 1:
        for source, (p, t) in sorted(by_source.items()):
            print(f"  {source}: n {len(p)}, Spearman {spearman(p, t):.3f}")
        rhos = [spearman(p, t) for p, t in by_source.values()]
        print(f"  mean within sources: {sum(rhos) / len(rhos):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
