#!/usr/bin/env python3
"""The translated labels (training-data/tasks-translated and
tasks-translated-more, 552 in 15 languages) scored by
leave-one-source-out fold heads: each translation by the heads of the fold
that held out its original's source, so neither the original, nor its
translation, nor (with language directions) the pairs of that source were
seen. A held-out measure of the task head on non-English prompts, in 15
languages, for runs of scripts/loso.py that did not train on the
translations.

  scripts/loso_translated.py base=/tmp/loso-base directions=/tmp/loso-lp

Prints one markdown row per run: accuracy over all translations and per
language. Scored prompts are kept in WORK/<source>/translated-<precision>.jsonl (the
precision the fold's heads were fitted at; with the fold's adapter when
`loso.py --fine-tune` trained one).
"""

import collections
import json
import os
import subprocess
import sys

BIN = "./target/release/pointsman"
TRANSLATED = ["training-data/tasks-translated/translated.jsonl",  # 8 languages, 377
              "training-data/tasks-translated-more/translated.jsonl"]  # 7 more, 175


def main():
    runs = [a.split("=", 1) for a in sys.argv[1:]]
    if not runs or any(len(r) != 2 for r in runs):
        sys.exit(__doc__)
    by = collections.defaultdict(list)
    for path in TRANSLATED:
        for line in open(path, encoding="utf-8"):
            r = json.loads(line)
            by[r["source"]].append(r)
    langs = sorted({r["lang"] for rs in by.values() for r in rs})
    print("| run | all | " + " | ".join(langs) + " |")
    print("|---" * (len(langs) + 2) + "|")
    for name, work in runs:
        ok, n = collections.Counter(), collections.Counter()
        for s, rs in sorted(by.items()):
            d = f"{work}/{s}"
            # The fold's own adapter when it was fine-tuned (`loso.py --fine-tune`), and the
            # precision its heads were fitted at.
            settings = json.load(open(f"{d}/heads.json"))["training"]["settings"]
            precision = settings.get("precision", "f32")
            adapter = ["--adapter", f"{d}/adapter.safetensors"] if os.path.exists(f"{d}/adapter.safetensors") else []
            out = f"{d}/translated-{precision}.jsonl"
            if not os.path.exists(out):
                with open(f"{d}/translated-input.jsonl", "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rs)
                with open(out + ".part", "w") as f:
                    subprocess.run([BIN, "classify", "--precision", precision, *adapter,
                                    "--heads", f"{d}/heads.safetensors",
                                    "--input", f"{d}/translated-input.jsonl"],
                                   stdout=f, check=True,
                                   env=dict(os.environ, RAYON_NUM_THREADS="1"))
                os.rename(out + ".part", out)
            truth = {r["id"]: (r["task"], r["lang"]) for r in rs}
            for line in open(out):
                p = json.loads(line)
                task, lang = truth[p["id"]]
                for k in ("all", lang):
                    n[k] += 1
                    ok[k] += p["task"] == task
        cells = [f"{ok[k] / n[k]:.3f} ({n[k]})" for k in ["all", *langs]]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
