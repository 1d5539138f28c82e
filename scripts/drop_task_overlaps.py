#!/usr/bin/env python3
"""Copies outcome record files, leaving out every record whose prompt is also a task-label
training prompt (training-data/tasks/; whitespace- and case-normalised, check_disjoint's rule).

For comparing an encoder fine-tuned on the task labels (a LoRA adapter from `pointsman train
encoder`) with the frozen one on the same rows: the adapter saw those prompts (with their task
label, never an outcome), so a routing measurement on them is not on unseen text. Both encoders
are then scored on the output.

    python3 scripts/drop_task_overlaps.py --out target/eval-data/routerbench-no-task-overlaps.jsonl \\
        training-data/outcomes/routerbench_*.jsonl
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_alpaca_eval import ROOT, copy_without, task_prompts  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tasks", type=Path, default=ROOT / "training-data/tasks")
    args = ap.parse_args()
    seen = task_prompts(args.tasks)
    kept = dropped = 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        for path in args.inputs:
            k, d = copy_without(path, seen, out)
            kept, dropped = kept + k, dropped + d
    print(f"kept {kept} records, dropped {dropped} whose prompt is in {args.tasks}; wrote {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
