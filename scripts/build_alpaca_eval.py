#!/usr/bin/env python3
"""Builds AlpacaEval outcome records for the routing harness.

Reads the AlpacaEval snapshot in ../shared/data/raw/alpaca_eval/ (725
instructions x 58 models; each row the weighted GPT-4-turbo judge's
preference between GPT-4-turbo's answer and the model's, 1 = baseline better,
2 = model better) and writes one record per instruction with an outcome for
every model of models/catalogs/alpaca_eval.toml:

    score    = preference - 1                      (in [0, 1])
    cost_usd = ceil(prompt chars / 4) x input price
             + ceil(answer chars / 4) x output price

The data is CC BY-NC 4.0: evaluation only. The output goes to an ignored
path (target/eval-data/ by default), never to training-data/, and must never
end up in a shipped artifact.

    python3 scripts/build_alpaca_eval.py
    pointsman eval --data target/eval-data/alpaca_eval.jsonl --folds 5 --no-task-head

--drop-task-overlaps leaves out every instruction that is also a prompt of
training-data/tasks/ (whitespace- and case-normalised, the rule of
check_disjoint in scripts/build_training_data.py; 263 today, listed there as
KNOWN_OVERLAPS: all of self_instruct_user, and a few OASST and Dolly
prompts) and writes target/eval-data/alpaca_eval-no-task-overlaps.jsonl
unless --out says otherwise. Use it whenever the encoder was trained on the
task labels (a LoRA adapter from `pointsman train encoder`), for every
encoder in the comparison, so both are scored on the same rows.

--training-only-models also writes the outcomes of every other AlpacaEval
model (not NullModel or gpt4_gamed, which game the judge) with cost_usd 0:
they have no list price and are never routed to. `eval --route-models`
must then name the catalog's models; the others only fit the success
model's shared prompt term. Written to
target/eval-data/alpaca_eval-training-only-models.jsonl unless --out says
otherwise.
"""

import argparse
import csv
import json
import math
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Adversarial entries that game the judge: never written.
GAMED = {"NullModel", "gpt4_gamed"}


def tokens(chars: int) -> int:
    """Estimated tokens, as the router's catalog estimates them (chars / 4, at least 1)."""
    return max(1, math.ceil(chars / 4))


def norm(text: str) -> str:
    """Whitespace- and case-normalised text: check_disjoint's rule (scripts/unlabelled_prompts._norm)."""
    return re.sub(r"\s+", " ", text).strip().lower()


def prompt_lines(path: Path):
    """Each non-blank line of a JSONL record file with its record's prompt; a line that is not a
    record with a prompt stops the script, naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield line, json.loads(line)["prompt"]
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"error: {path} line {n}: {e}")


def copy_without(path: Path, drop: set[str], out) -> tuple[int, int]:
    """Writes to `out` each record of `path` whose normalised prompt is not in `drop`; returns
    (kept, dropped)."""
    kept = dropped = 0
    for line, prompt in prompt_lines(path):
        if norm(prompt) in drop:
            dropped += 1
        else:
            out.write(line if line.endswith("\n") else line + "\n")
            kept += 1
    return kept, dropped


def task_prompts(folder: Path) -> set[str]:
    """The normalised prompts of every task-label record file in `folder`."""
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        sys.exit(f"error: no task-label files (*.jsonl) in {folder}")
    return {norm(prompt) for path in files for _, prompt in prompt_lines(path)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=ROOT.parent / "shared/data/raw/alpaca_eval")
    ap.add_argument("--catalog", type=Path, default=ROOT / "models/catalogs/alpaca_eval.toml")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--drop-task-overlaps",
        action="store_true",
        help="leave out instructions that are also task-label training prompts (training-data/tasks/)",
    )
    ap.add_argument(
        "--training-only-models",
        action="store_true",
        help="also write every other model's outcomes (cost 0, for eval --route-models)",
    )
    ap.add_argument("--tasks", type=Path, default=ROOT / "training-data/tasks")
    args = ap.parse_args()
    if args.out is None:
        name = "alpaca_eval-no-task-overlaps.jsonl" if args.drop_task_overlaps else "alpaca_eval.jsonl"
        if args.training_only_models:
            name = name.replace(".jsonl", "-training-only-models.jsonl")
        args.out = ROOT / "target/eval-data" / name

    if "training-data" in args.out.resolve().parts:
        sys.exit("error: AlpacaEval is CC BY-NC, evaluation only: never write it under training-data/")
    catalog = tomllib.loads(args.catalog.read_text())
    prices = {
        m["name"]: (m["input_usd_per_mtok"], m["output_usd_per_mtok"]) for m in catalog["models"]
    }

    instructions = {}
    with open(args.raw / "instructions.jsonl") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                instructions[int(row["instruction_idx"])] = (row["instruction"], row["dataset"])
            except (ValueError, KeyError) as e:
                sys.exit(f"error: {args.raw / 'instructions.jsonl'} line {n}: {e}")

    outcomes: dict[int, dict] = {i: {} for i in instructions}
    with open(args.raw / "preferences_long.csv", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            model = row["model"]
            priced = model in prices
            if not priced and (not args.training_only_models or model in GAMED):
                continue
            try:
                idx = int(row["instruction_idx"])
                pref = float(row["preference"])
                answer_chars = int(row["output_chars"])
            except (ValueError, KeyError) as e:
                sys.exit(f"error: {args.raw / 'preferences_long.csv'} line {n}: {e}")
            if idx not in instructions:
                sys.exit(f"error: preferences_long.csv line {n}: unknown instruction_idx {idx}")
            if not 1.0 <= pref <= 2.0:
                sys.exit(f"error: preferences_long.csv line {n}: preference {pref} outside [1, 2]")
            prompt, _ = instructions[idx]
            inp, out = prices.get(model, (0.0, 0.0))
            t_in, t_out = tokens(len(prompt)), tokens(answer_chars)
            outcomes[idx][model] = {
                "score": round(pref - 1.0, 6),
                "cost_usd": (t_in * inp + t_out * out) / 1e6,
                "input_tokens": t_in,
                "output_tokens": t_out,
            }

    dropped = 0
    if args.drop_task_overlaps:
        seen = task_prompts(args.tasks)
        for idx in [i for i, (prompt, _) in instructions.items() if norm(prompt) in seen]:
            del instructions[idx]
            del outcomes[idx]
            dropped += 1
        print(f"dropped {dropped} instructions that are also prompts of {args.tasks}", file=sys.stderr)

    missing = sorted(set(prices) - {m for o in outcomes.values() for m in o})
    if missing:
        sys.exit(f"error: catalog models with no AlpacaEval rows: {', '.join(missing)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    complete = 0
    with open(args.out, "w") as f:
        for idx in sorted(instructions):
            prompt, dataset = instructions[idx]
            complete += all(m in outcomes[idx] for m in prices)
            rec = {
                "id": f"alpaca_eval/{idx}",
                "prompt": prompt,
                "source": f"alpaca_eval_{dataset}",
                "outcomes": outcomes[idx],
                "licence": "CC BY-NC 4.0, evaluation only",
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(
        f"wrote {len(instructions)} records ({complete} with all {len(prices)} models) to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
