#!/usr/bin/env python3
"""Two leave-one-source-out runs of scripts/loso.py side by side, as
markdown: per-source accuracy, pooled accuracy and macro recall over all
sources and over the English sources (every source but nonenglish_real
and the WMT'22 translation pairs), per-class recall, and each run's summed
confusion matrix.

  scripts/loso_compare.py NAME_A=/tmp/loso-minilm NAME_B=/tmp/loso-e5

Only sources finished in both runs are compared (the rest are listed).
"""

import json
import os
import sys

LABELS = ["code", "math", "reasoning", "knowledge", "extraction", "summarization",
          "translation", "creative_writing", "brainstorming", "classification", "chat"]


def folds(work):
    out = {}
    for s in sorted(os.listdir(work)):
        p = f"{work}/{s}/heads.json"
        if os.path.exists(p):
            m = json.load(open(p))["metrics"]["task_eval_sources"][s]
            assert m["labels"] == LABELS
            out[s] = m["confusion"]
    return out


def pooled(confs):
    t = [[0] * len(LABELS) for _ in LABELS]
    for c in confs:
        for i in range(len(LABELS)):
            for j in range(len(LABELS)):
                t[i][j] += c[i][j]
    return t


def acc(c):
    n = sum(map(sum, c))
    return sum(c[i][i] for i in range(len(LABELS))) / n if n else float("nan"), n


def recalls(c):
    return [c[i][i] / sum(c[i]) if sum(c[i]) else None for i in range(len(LABELS))]


def macro(c):
    r = [x for x in recalls(c) if x is not None]
    return sum(r) / len(r)


def english(s):
    return s != "nonenglish_real" and not s.startswith("wmt22_")


def main():
    runs = [a.split("=", 1) for a in sys.argv[1:]]
    if len(runs) != 2 or any(len(r) != 2 for r in runs):
        sys.exit(__doc__)
    (na, wa), (nb, wb) = runs
    fa, fb = folds(wa), folds(wb)
    both = sorted(set(fa) & set(fb))
    only = sorted(set(fa) ^ set(fb))
    print(f"{len(both)} sources in both runs" + (f"; in one only: {', '.join(only)}" if only else "") + "\n")
    print(f"| held-out source | n | {na} | {nb} |\n|---|---|---|---|")
    for s in both:
        (a, n), (b, _) = acc(fa[s]), acc(fb[s])
        print(f"| {s} | {n} | {a:.3f} | {b:.3f} |")
    for title, keep in [("all sources", lambda s: True), ("English sources", english)]:
        src = [s for s in both if keep(s)]
        ca, cb = pooled(fa[s] for s in src), pooled(fb[s] for s in src)
        (a, n), (b, _) = acc(ca), acc(cb)
        print(f"| **{title}, pooled ({len(src)})** | {n} | **{a:.3f}** (macro recall {macro(ca):.3f}) | "
              f"**{b:.3f}** (macro recall {macro(cb):.3f}) |")
    ca, cb = pooled(fa[s] for s in both), pooled(fb[s] for s in both)
    print(f"\n| class | n | {na} recall | {nb} recall |\n|---|---|---|---|")
    for i, (x, y) in enumerate(zip(recalls(ca), recalls(cb))):
        f = lambda v: "–" if v is None else f"{v:.2f}"
        print(f"| {LABELS[i]} | {sum(ca[i])} | {f(x)} | {f(y)} |")
    for name, c in [(na, ca), (nb, cb)]:
        print(f"\nConfusion, {name}, all held-out predictions (rows: true, columns: predicted)\n")
        print("| true \\ predicted | " + " | ".join(LABELS) + " |")
        print("|---" * (len(LABELS) + 1) + "|")
        for i, lab in enumerate(LABELS):
            print(f"| {lab} | " + " | ".join(str(v) for v in c[i]) + " |")


if __name__ == "__main__":
    main()
