#!/usr/bin/env python3
"""Pointsman beside sentence-transformers (PyTorch): same model, same
prompts, same run; prints medians and the ratios PyTorch / Pointsman
(above 1 = Pointsman is faster).

Not part of CI (it needs torch). Usage:

    python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install torch sentence-transformers
    #   (docs/PERFORMANCE.md used torch 2.15.0+cu132 run on CPU; the smaller CPU-only wheel,
    #    pip install --index-url https://download.pytorch.org/whl/cpu torch, first, should also
    #    do but was not reachable from the development machine, so it is untested)
    cargo build --release --locked -p pointsman-cli
    HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python scripts/side_by_side.py [--iterations 10] [--warmup 2]
        [--rounds 2] [--threads 2] [--cases batch1_short,batch1_long] [--prompts FILE.jsonl] [--json]

What is timed, per call (one batch of prompts), on both sides:
- encoder: one pass over the call's full prompts. Pointsman: `Encoder::embed`
  (via `pointsman bench classify`); PyTorch: `model.encode(prompts)`.
- classify: what `Classifier::predict` encodes. Pointsman: predict end to end
  (full prompts, then, when the heads use instruction views, the first and
  last 200 characters of every prompt over 400 characters, then the heads);
  PyTorch: the same encodes (full prompts, then the views), no heads (the
  heads are two small MLPs, microseconds).

The cases are those of `pointsman bench classify`: by default batch 1 short
(18 tokens), batch 1 long (219 tokens: three encoded sequences in classify)
and batch 32 mixed (24 short + 8 long, as in benches/classify.rs); with
--prompts FILE, every prompt alone and the file in batches of 32. The prompt
texts come from the Rust side's JSON, so both sides read exactly the same.
Each round runs both sides back to back (Pointsman first in even rounds,
PyTorch first in odd ones) in this one run; medians pool every round.
Both sides truncate at the model's max_seq_length (sentence_bert_config.json:
256 tokens for all-MiniLM-L6-v2, 512 for multilingual-e5-small;
sentence-transformers keeps the head, Pointsman head and tail), so long
prompts cost the same work. For e5 both sides prepend "query: " (its
config_sentence_transformers.json default prompt; Pointsman reads the same
file). Another model: --model-dir DIR --heads HEADS, e.g.
    --model-dir models/multilingual-e5-small --heads models/heads-e5/task-difficulty.safetensors
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_HELP = (
    "sentence-transformers is not importable from {python}. Create a throwaway venv:\n"
    "  python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install torch sentence-transformers\n"
    "  (a smaller CPU-only torch, where download.pytorch.org is reachable: first\n"
    "   /tmp/stvenv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch)\n"
    "then run: HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python scripts/side_by_side.py"
)


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default; the same
    as `pointsman bench classify`)."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = q / 100.0 * (len(s) - 1)
    lo, hi = int(pos // 1), int(-(-pos // 1))
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def stats(values):
    return {
        "median": round(percentile(values, 50), 3),
        "p10": round(percentile(values, 10), 3),
        "p90": round(percentile(values, 90), 3),
        "n": len(values),
    }


def views(text):
    """The instruction views Pointsman embeds for a prompt over 400
    characters (Unicode code points, as Rust's chars())."""
    if len(text) <= 400:
        return None
    return text[:200], text[-200:]


def run_pointsman(args, with_texts, precision):
    cmd = [
        args.pointsman, "bench", "classify", "--precision", precision,
        "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--samples",
    ]
    cmd += ["--model-dir", args.model_dir]
    if args.heads:
        cmd += ["--heads", args.heads]
    if with_texts:
        cmd.append("--with-texts")
    if args.prompts:
        cmd += ["--prompts", args.prompts]
    if args.cases:
        cmd += ["--cases", args.cases]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def run_pytorch(model, cases, use_views, iterations, warmup):
    """Samples in milliseconds per case: {name: {"encoder": [...], "classify": [...]}}."""
    samples = {c["name"]: {"encoder": [], "classify": []} for c in cases}
    encode = lambda texts: model.encode(texts, batch_size=32, show_progress_bar=False)
    for it in range(warmup + iterations):
        for c in cases:
            for call in c["texts"]:
                t = time.perf_counter()
                encode(call)
                enc = (time.perf_counter() - t) * 1e3
                t = time.perf_counter()
                encode(call)
                if use_views:
                    vs = [v for text in call if (pair := views(text)) for v in pair]
                    if vs:
                        encode(vs)
                cls = (time.perf_counter() - t) * 1e3
                if it >= warmup:
                    samples[c["name"]]["encoder"].append(enc)
                    samples[c["name"]]["classify"].append(cls)
    return samples


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pointsman", default=os.path.join(ROOT, "target/release/pointsman"),
                   help="the pointsman binary (default: target/release/pointsman)")
    p.add_argument("--model-dir", default=os.path.join(ROOT, "models/all-MiniLM-L6-v2"),
                   help="the converted model folder both sides load (sentence-transformers layout)")
    p.add_argument("--heads", help="Pointsman's heads for that model (default: pointsman's default heads); "
                   "whether they use instruction views decides what both sides encode in classify")
    p.add_argument("--iterations", type=int, default=10, help="timed repetitions per case, per side, per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    p.add_argument("--rounds", type=int, default=2, help="back-to-back rounds, alternating which side goes first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--cases", help="only these cases (comma-separated), e.g. batch1_short,batch1_long")
    p.add_argument("--prompts", help="JSONL records (prompt field) instead of the built-in cases")
    p.add_argument("--json", action="store_true", help="print the result as JSON, not a table")
    p.add_argument("--precision", default="f32",
                   help="Pointsman's --precision, or several comma-separated (f32,bf16): each is timed "
                        "in every round and gets its own rows against the same PyTorch samples")
    args = p.parse_args()
    precisions = args.precision.split(",")

    try:
        import torch
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        sys.exit(f"{e}\n" + VENV_HELP.format(python=sys.executable))
    if not os.path.exists(args.pointsman):
        sys.exit(f"{args.pointsman} is missing: cargo build --release --locked -p pointsman-cli")

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model_dir, device="cpu")
    model.eval()
    load_start = os.getloadavg()

    rust_runs = {prec: [] for prec in precisions}
    py_runs, cases, use_views = [], None, True
    for r in range(args.rounds):
        order = ["pointsman", "pytorch"] if r % 2 == 0 else ["pytorch", "pointsman"]
        for side in order:
            print(f"round {r + 1}/{args.rounds}: {side}", file=sys.stderr)
            if side == "pointsman":
                for prec in precisions:
                    out = run_pointsman(args, with_texts=cases is None, precision=prec)
                    if cases is None:
                        cases = out["cases"]
                        use_views = out["views"]
                    rust_runs[prec].append(out)
            else:
                with torch.inference_mode():
                    py_runs.append(run_pytorch(model, cases, use_views, args.iterations, args.warmup))

    rows = []
    for c, prec in [(c, prec) for c in cases for prec in precisions]:
        name = c["name"]
        row = {
            "case": name,
            "precision": prec,
            "calls": c["calls"],
            "prompts": c["prompts"],
            "tokens_mean": c["tokens_mean"],
            "sequences_encoded": c["sequences_encoded"],
        }
        for what in ("encoder", "classify"):
            rs = [x for run in rust_runs[prec] for cc in run["cases"] if cc["name"] == name
                  for x in cc[f"{what}_ms"]["samples"]]
            ps = [x for run in py_runs for x in run[name][what]]
            row[what] = {
                "pointsman_ms": stats(rs),
                "pytorch_ms": stats(ps),
                "ratio_pytorch_over_pointsman": round(percentile(ps, 50) / percentile(rs, 50), 3),
            }
        rows.append(row)

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_start_end": [load_start[0], os.getloadavg()[0]],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sentence_transformers": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "pointsman": rust_runs[precisions[0]][0]["pointsman"],
        "views": use_views,
        "iterations_per_round": args.iterations,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "cases": rows,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['date']}  torch {result['torch']} ({result['torch_threads']} threads), "
          f"sentence-transformers {result['sentence_transformers']}, pointsman {result['pointsman']}; "
          f"{args.rounds} rounds x {args.iterations} iterations per side; "
          f"load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    print("medians in ms (p10-p90); ratio = PyTorch / Pointsman, above 1 = Pointsman faster")
    print("| case (Pointsman precision) | tokens | encoder: PyTorch | Pointsman | ratio | classify (sequences): PyTorch | Pointsman | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    fmt = lambda s: f"{s['median']:.1f} ({s['p10']:.1f}-{s['p90']:.1f})"
    for r in rows:
        e, k = r["encoder"], r["classify"]
        print(f"| {r['case']} ({r['precision']}) | {r['tokens_mean']} | {fmt(e['pytorch_ms'])} | {fmt(e['pointsman_ms'])} | "
              f"{e['ratio_pytorch_over_pointsman']:.2f} | ({r['sequences_encoded']['classify']}) "
              f"{fmt(k['pytorch_ms'])} | {fmt(k['pointsman_ms'])} | {k['ratio_pytorch_over_pointsman']:.2f} |")


if __name__ == "__main__":
    main()
