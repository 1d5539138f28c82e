#!/usr/bin/env python3
"""Task accuracy of `pointsman classify` output against labelled records.

  ./target/release/pointsman classify --precision int8 --input training-data/eval/sharegpt500.jsonl > /tmp/p.jsonl
  scripts/task_accuracy.py training-data/eval/sharegpt500.jsonl /tmp/p.jsonl
  scripts/task_accuracy.py --by lang training-data/tasks-written/written.jsonl /tmp/w.jsonl   # per language
  scripts/task_accuracy.py --by task training-data/tasks-written/written.jsonl /tmp/w.jsonl   # per class (recall)

Joins on `id`; prints, per value of a field of the labelled records
(`--by`, default `source`), n, accuracy and macro recall (mean over the
classes present), as a markdown table, then the whole file's line, and how
many prompts labelled other than `translation` were called `translation`
(the commonest error on non-English prompts).
"""

import argparse
import collections
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--by", default="source", help="field of the labelled records to group by")
    ap.add_argument("labelled")
    ap.add_argument("predicted")
    args = ap.parse_args()
    truth = {}
    for n, line in enumerate(open(args.labelled, encoding="utf-8"), 1):
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"{args.labelled}:{n}: {e}")
        if r.get("task"):
            truth[r["id"]] = (str(r.get(args.by, "?")), r["task"])
    hits = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    seen = 0
    called_translation = 0
    for n, line in enumerate(open(args.predicted, encoding="utf-8"), 1):
        try:
            p = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"{args.predicted}:{n}: {e}")
        if p["id"] not in truth:
            continue
        seen += 1
        group, task = truth[p["id"]]
        h = hits[group][task]
        h[0] += p["task"] == task
        h[1] += 1
        called_translation += p["task"] == "translation" and task != "translation"
    if seen != len(truth):
        sys.exit(f"{args.predicted}: {seen} predictions for {len(truth)} labelled records")

    def row(name, by_class):
        right = sum(h[0] for h in by_class.values())
        total = sum(h[1] for h in by_class.values())
        macro = sum(h[0] / h[1] for h in by_class.values()) / len(by_class)
        print(f"| {name} | {total} | {right / total:.3f} | {macro:.3f} |")

    print(f"| {args.by} | n | accuracy | macro recall |\n|---|---|---|---|")
    everything = collections.defaultdict(lambda: [0, 0])
    for group, by_class in sorted(hits.items()):
        row(group, by_class)
        for task, h in by_class.items():
            everything[task][0] += h[0]
            everything[task][1] += h[1]
    row("**all**", everything)
    print(f"\n{called_translation} prompts labelled other than `translation` were called `translation`")


if __name__ == "__main__":
    main()
