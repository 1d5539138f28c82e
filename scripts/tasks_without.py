#!/usr/bin/env python3
"""Copies a folder of task-label files, leaving out every record whose prompt is also in the given
outcome files (whitespace- and case-normalised, check_disjoint's rule).

For a task head that has never seen a routing evaluation's prompts: the success model's
`--head-features task` reads the task head's outputs, and on prompts the head was trained on those
outputs are in-sample (docs/EVALUATION.md, "The heads' outputs as success features"). Train heads
on the output folder (`pointsman train heads --tasks OUT`) and score routing with them.

    python3 scripts/tasks_without.py --out /tmp/tasks-clean \\
        target/eval-data/alpaca_eval.jsonl training-data/outcomes/routerbench_*.jsonl
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_alpaca_eval import ROOT, copy_without, norm, prompt_lines  # noqa: E402


def prompts_of(paths: list[Path]) -> set[str]:
    return {norm(prompt) for path in paths for _, prompt in prompt_lines(path)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outcomes", type=Path, nargs="+", help="files whose prompts are left out")
    ap.add_argument("--out", type=Path, required=True, help="folder to write (must not exist)")
    ap.add_argument("--tasks", type=Path, default=ROOT / "training-data/tasks")
    args = ap.parse_args()
    if args.out.exists():
        sys.exit(f"error: {args.out} exists; give a new folder")
    drop = prompts_of(args.outcomes)
    args.out.mkdir(parents=True)
    for path in sorted(args.tasks.glob("*.jsonl")):
        with open(args.out / path.name, "w", encoding="utf-8") as out:
            kept, dropped = copy_without(path, drop, out)
        if kept == 0:
            (args.out / path.name).unlink()
        if dropped:
            print(f"{path.name}: dropped {dropped}, kept {kept}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
