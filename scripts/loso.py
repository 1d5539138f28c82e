#!/usr/bin/env python3
"""Leave-one-source-out for the task head, one single-threaded `train heads
--no-cv` run per held-out source (the recipe of docs/EVALUATION.md).

Why not the built-in cross-validation (`train heads` without `--no-cv`): on
the shared 2-core machine one process that runs every fold either finishes
or is lost; per-source runs can be resumed (a finished fold is skipped) and
run two at a time, each on one thread.

  scripts/loso.py --work /tmp/loso-minilm                      # all sources
  scripts/loso.py --work /tmp/loso-e5 -- --model-dir models/multilingual-e5-small --no-views
  scripts/loso.py --work /tmp/loso-int8 --sources arc,gsm8k -- --precision int8
  scripts/loso.py --work /tmp/loso-minilm --sources arc,gsm8k --score-precision int8
  scripts/loso.py --work /tmp/loso-minilm --summary            # tables only
  scripts/loso.py --work /tmp/loso-ft --fine-tune -- --precision int8   # a LoRA adapter per fold

Arguments after `--` go to `pointsman train heads` (whose default uses the
language directions of training-data/tasks-translated; `-- --no-language-pairs`
for heads without them; a fold's directions never see its held-out source). Each fold's heads and
metrics are in WORK/<source>/heads.{safetensors,json};
`--score-precision P` also scores each fold's held-out source with
`pointsman classify --precision P` (the fold heads on P embeddings, the
inference path) into WORK/<source>/scored-P.jsonl. `--summary` prints the
per-source table, the overall accuracy and macro recall, per-class recall
and the summed confusion matrix (markdown), and writes WORK/summary.json.

Translations (training-data/tasks-translated/translated.jsonl, read with `--tasks training-data/tasks training-data/tasks-translated`; `translated_from` set) carry their
original's source, so a fold that holds a source out holds its translations out too; they are
scored in that fold under `<source>:translated` and reported in a separate table, so the main
table is over the sources' own prompts only (comparable with runs before the translations).
"""

import argparse
import collections
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import time

LABELS = ["code", "math", "reasoning", "knowledge", "extraction", "summarization",
          "translation", "creative_writing", "brainstorming", "classification", "chat"]
BIN = "./target/release/pointsman"


TRANSLATED = ":translated"  # suffix of the held-out translations' source name inside a fold


def records_by_source(tasks_dirs=("training-data/tasks",)):
    """Records grouped by their `source`. A translation (`translated_from`) carries its original's
    source (scripts/build_training_data.py `translated`), so it lands in its original's group and is
    held out with it: it is never trained on when its original's source is the held-out one."""
    by = collections.defaultdict(list)
    for f in [f for d in tasks_dirs for f in sorted(glob.glob(f"{d}/*.jsonl"))]:
        stem = os.path.basename(f)[: -len(".jsonl")]
        for line in open(f, encoding="utf-8"):
            r = json.loads(line)
            r.setdefault("source", stem)
            by[r["source"]].append(r)
    return by


def prepare(work, by, sources):
    os.makedirs(f"{work}/empty", exist_ok=True)
    for s in sources:
        d = f"{work}/{s}"
        if os.path.exists(f"{d}/eval/held_out.jsonl"):
            continue
        os.makedirs(f"{d}/tasks", exist_ok=True)
        os.makedirs(f"{d}/eval", exist_ok=True)
        with open(f"{d}/tasks/rest.jsonl", "w", encoding="utf-8") as out:
            for other, recs in by.items():
                if other != s:
                    out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
        # The held-out source's own prompts keep its name (the per-source table, comparable with
        # runs before the translations); its translations are scored too, under `<source>:translated`.
        native = [r for r in by[s] if not r.get("translated_from")]
        translated = [dict(r, source=s + TRANSLATED) for r in by[s] if r.get("translated_from")]
        with open(f"{d}/eval/held_out.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in native)
        if translated:
            with open(f"{d}/eval/held_out_translated.jsonl", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in translated)


def nice10():
    """Run a fold at niceness 10, absolute: a `nice -n 10` prefix adds to the
    caller's, so `nice python3 scripts/loso.py` ran the folds at 19, where
    they got about 3% of a core beside other niced jobs. (Never lowers a
    higher niceness.)"""
    os.setpriority(os.PRIO_PROCESS, 0, max(10, os.getpriority(os.PRIO_PROCESS, 0)))


def env1():
    # One thread per fold. glibc returns candle's large freed tensors to the
    # kernel (munmap) and faults them back in on the next step: 21 s of
    # system time in a fold of 13 s user time. Keeping freed memory in the
    # process (high mmap/trim thresholds) cuts that to 0.2 s; results are
    # unchanged (same accuracy, same heads).
    return dict(os.environ, RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1",
                MALLOC_MMAP_THRESHOLD_="4294967296", MALLOC_TRIM_THRESHOLD_="4294967296",
                MALLOC_TOP_PAD_="1073741824")


# The fine-tuned candidates' recipe (docs/EVALUATION.md, "Leave-one-source-out of the fine-tuned
# encoders"): the shipped e5 adapter's settings, task labels only.
FINE_TUNE_ARGS = "--layers 1 --window 64 --max-per-source 60"


def run_fold(work, s, extra, fine_tune=None):
    """One fold's heads. With `fine_tune` (extra `train encoder` flags), a LoRA adapter is first
    trained on the fold's training sources only (`train encoder --folds 0`) and the heads are fitted
    on the encoder with that adapter merged (`train heads --adapter`), embeddings cached under
    WORK/cache (each fold's adapter is a different encoder)."""
    d = f"{work}/{s}"
    if os.path.exists(f"{d}/heads.json"):
        return s, 0.0, "done before"
    try:  # another loso.py on the same WORK has this fold (rm WORK/*/running after a kill)
        os.close(os.open(f"{d}/running", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return s, 0.0, "running elsewhere"
    t = time.time()
    cmd = [BIN, "train", "heads", "--no-cv", "--tasks", f"{d}/tasks",
           "--eval", f"{d}/eval", "--outcomes", f"{work}/empty",
           "--out", f"{d}/heads.safetensors", "--report", f"{d}/report.md", *extra]
    with open(f"{d}/log.txt", "w") as log:
        rc = 0
        if fine_tune is not None:
            model = extra[extra.index("--model-dir") + 1] if "--model-dir" in extra else "models/multilingual-e5-small"
            enc = [BIN, "train", "encoder", "--tasks", f"{d}/tasks", "--eval", f"{work}/empty",
                   "--folds", "0", "--model-dir", model, "--out", f"{d}/adapter.safetensors",
                   "--lower-cache", f"{d}/lower.bin", *fine_tune.split()]
            rc = subprocess.run(enc, env=env1(), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=nice10).returncode
            if os.path.exists(f"{d}/lower.bin"):
                os.remove(f"{d}/lower.bin")  # hundreds of MB, never reused by another fold
            cmd += ["--adapter", f"{d}/adapter.safetensors", "--cache-dir", f"{work}/cache"]
        if rc == 0:
            rc = subprocess.run(cmd, env=env1(), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=nice10).returncode
    os.remove(f"{d}/running")
    return s, time.time() - t, f"rc {rc}"


def score_fold(work, s, precision, model_args):
    d = f"{work}/{s}"
    out = f"{d}/scored-{precision}.jsonl"
    if os.path.exists(out) or not os.path.exists(f"{d}/heads.json"):
        return s, 0.0, "skipped"
    t = time.time()
    cmd = [BIN, "classify", "--precision", precision,
           "--heads", f"{d}/heads.safetensors", "--input", f"{d}/eval/held_out.jsonl", *model_args]
    with open(out + ".part", "w") as f:
        rc = subprocess.run(cmd, env=env1(), stdout=f, preexec_fn=nice10).returncode
    if rc == 0:
        os.rename(out + ".part", out)
    return s, time.time() - t, f"rc {rc}"


def confusion_of_fold(work, s, precision, translated=False):
    """The held-out source's confusion matrix (rows true, columns predicted); with `translated`,
    that of the source's held-out translations (KeyError when it has none)."""
    d = f"{work}/{s}"
    if translated:
        m = json.load(open(f"{d}/heads.json"))["metrics"]["task_eval_sources"][s + TRANSLATED]
        assert m["labels"] == LABELS, m["labels"]
        return m["confusion"]
    if precision is None:
        m = json.load(open(f"{d}/heads.json"))["metrics"]["task_eval_sources"][s]
        assert m["labels"] == LABELS, m["labels"]
        return m["confusion"]
    truth = {}
    for line in open(f"{d}/eval/held_out.jsonl", encoding="utf-8"):
        r = json.loads(line)
        truth[r["id"]] = r["task"]
    conf = [[0] * len(LABELS) for _ in LABELS]
    for line in open(f"{d}/scored-{precision}.jsonl", encoding="utf-8"):
        p = json.loads(line)
        conf[LABELS.index(truth[p["id"]])][LABELS.index(p["task"])] += 1
    return conf


def summary(work, sources, precision):
    total = [[0] * len(LABELS) for _ in LABELS]
    rows, missing = [], []
    for s in sources:
        try:
            c = confusion_of_fold(work, s, precision)
        except (FileNotFoundError, KeyError):
            missing.append(s)
            continue
        n = sum(map(sum, c))
        acc = sum(c[i][i] for i in range(len(LABELS))) / n
        rows.append((s, n, acc))
        for i in range(len(LABELS)):
            for j in range(len(LABELS)):
                total[i][j] += c[i][j]
    n = sum(map(sum, total))
    acc = sum(total[i][i] for i in range(len(LABELS))) / max(n, 1)
    recall = {}
    for i, lab in enumerate(LABELS):
        k = sum(total[i])
        recall[lab] = (total[i][i] / k if k else None, k)
    present = [r for r, _ in recall.values() if r is not None]
    macro = sum(present) / max(len(present), 1)
    tag = f" (held-out prompts scored with --precision {precision})" if precision else ""
    print(f"## {work}{tag}\n")
    print(f"{len(rows)} of {len(sources)} folds; missing: {', '.join(missing) or 'none'}\n")
    print(f"accuracy {acc:.3f}, macro recall {macro:.3f}, n = {n}\n")
    print("| held-out source | n | accuracy |\n|---|---|---|")
    for s, k, a in rows:
        print(f"| {s} | {k} | {a:.3f} |")
    print("\n| class | n | recall |\n|---|---|---|")
    for lab, (r, k) in recall.items():
        print(f"| {lab} | {k} | {'–' if r is None else f'{r:.2f}'} |")
    print("\nConfusion (rows: true, columns: predicted, in the order of the rows)\n")
    print("| true \\ predicted | " + " | ".join(LABELS) + " |")
    print("|---" * (len(LABELS) + 1) + "|")
    for i, lab in enumerate(LABELS):
        print(f"| {lab} | " + " | ".join(str(v) for v in total[i]) + " |")
    out = {"folds": len(rows), "missing": missing, "accuracy": acc, "macro_recall": macro, "n": n,
           "per_source": {s: {"n": k, "accuracy": a} for s, k, a in rows},
           "recall": {k: v[0] for k, v in recall.items()}, "labels": LABELS, "confusion": total}
    translated = translated_summary(work, sources) if precision is None else None
    if translated:
        out["translated"] = translated
    name = f"summary-{precision}.json" if precision else "summary.json"
    json.dump(out, open(f"{work}/{name}", "w"), indent=1)


def translated_summary(work, sources):
    """Accuracy on the translations held out with their original's source (not in the totals above)."""
    total = [[0] * len(LABELS) for _ in LABELS]
    rows = []
    for s in sources:
        try:
            c = confusion_of_fold(work, s, None, translated=True)
        except (FileNotFoundError, KeyError):
            continue
        k = sum(map(sum, c))
        rows.append((s, k, sum(c[i][i] for i in range(len(LABELS))) / k))
        for i in range(len(LABELS)):
            for j in range(len(LABELS)):
                total[i][j] += c[i][j]
    n = sum(map(sum, total))
    if not n:
        return None
    acc = sum(total[i][i] for i in range(len(LABELS))) / n
    print(f"\n### Translations, held out with their original's source (not in the totals above)\n")
    print(f"accuracy {acc:.3f}, n = {n}\n")
    print("| original's source | n | accuracy |\n|---|---|---|")
    for s, k, a in rows:
        print(f"| {s} | {k} | {a:.3f} |")
    recall = {lab: total[i][i] / sum(total[i]) for i, lab in enumerate(LABELS) if sum(total[i])}
    print("\n| class | n | recall |\n|---|---|---|")
    for i, lab in enumerate(LABELS):
        if sum(total[i]):
            print(f"| {lab} | {sum(total[i])} | {recall[lab]:.2f} |")
    return {"accuracy": acc, "n": n, "per_source": {s: {"n": k, "accuracy": a} for s, k, a in rows},
            "recall": recall, "confusion": total}


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--tasks", nargs="+", default=["training-data/tasks"],
                    help="folder(s) of task-labelled JSONL files to split; add training-data/tasks-translated "
                         "for the translated labels (held out with their originals)")
    ap.add_argument("--sources", help="comma-separated; default every source in --tasks")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--summary", action="store_true", help="only print the tables of finished folds")
    ap.add_argument("--score-precision", help="score each held-out source with classify --precision P")
    ap.add_argument("--model-args", default="", help="classify's model flags for --score-precision (e.g. '--model-dir X')")
    ap.add_argument("--fine-tune", nargs="?", const=FINE_TUNE_ARGS, default=None, metavar="ENCODER_FLAGS",
                    help="train a LoRA adapter per fold (`train encoder` on the fold's training sources, "
                         f"with these flags; default '{FINE_TUNE_ARGS}') and fit the heads on it")
    a = ap.parse_args(argv)
    by = records_by_source(a.tasks)
    sources = a.sources.split(",") if a.sources else sorted(by)
    unknown = [s for s in sources if s not in by]
    if unknown:
        sys.exit(f"unknown source(s): {unknown}")
    if not a.summary:
        prepare(a.work, by, sources)
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
            if a.score_precision:
                jobs = [pool.submit(score_fold, a.work, s, a.score_precision, a.model_args.split()) for s in sources]
            else:
                jobs = [pool.submit(run_fold, a.work, s, extra, a.fine_tune) for s in sources]
            for f in concurrent.futures.as_completed(jobs):
                s, secs, status = f.result()
                print(f"{s}: {status} ({secs:.0f} s)", file=sys.stderr, flush=True)
    summary(a.work, sources, a.score_precision)


if __name__ == "__main__":
    main()
