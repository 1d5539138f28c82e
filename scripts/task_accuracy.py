#!/usr/bin/env python3
"""Task accuracy of `pointsman classify` output against labelled records.

  ./target/release/pointsman classify --precision int8 --input training-data/eval/sharegpt500.jsonl > /tmp/p.jsonl
  scripts/task_accuracy.py training-data/eval/sharegpt500.jsonl /tmp/p.jsonl

Joins on `id`; prints, per `source` of the labelled records, n, accuracy and
macro recall (mean over the classes present), as a markdown table.
"""

import collections
import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    labelled, predicted = sys.argv[1], sys.argv[2]
    truth = {}
    for n, line in enumerate(open(labelled, encoding="utf-8"), 1):
        r = json.loads(line)
        if r.get("task"):
            truth[r["id"]] = (r.get("source", "?"), r["task"])
    hits = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    seen = 0
    for line in open(predicted, encoding="utf-8"):
        p = json.loads(line)
        if p["id"] not in truth:
            continue
        seen += 1
        source, task = truth[p["id"]]
        h = hits[source][task]
        h[0] += p["task"] == task
        h[1] += 1
    if seen != len(truth):
        sys.exit(f"{predicted}: {seen} predictions for {len(truth)} labelled records")
    print("| source | n | accuracy | macro recall |\n|---|---|---|---|")
    for source, by_class in sorted(hits.items()):
        right = sum(h[0] for h in by_class.values())
        total = sum(h[1] for h in by_class.values())
        macro = sum(h[0] / h[1] for h in by_class.values()) / len(by_class)
        print(f"| {source} | {total} | {right / total:.3f} | {macro:.3f} |")


if __name__ == "__main__":
    main()
