#!/usr/bin/env python3
"""Near-duplicate check for a hand-label batch, run before the batch is committed.

`near_duplicates.py LISTING LABELFILE...` looks up the prompts of LABELFILE's ids in the
`unlabelled_prompts.py` listing LISTING and compares each one with every prompt of
training-data/tasks/ and training-data/eval/ (other than the batch's own rows), with every
AlpacaEval instruction, and with the earlier prompts of the batch. It flags:
- the same whitespace- and case-normalised text, or the same first 60 word characters
  (the listings' own disjointness rule, see unlabelled_prompts._disjoint);
- near duplicates: word 5-gram Jaccard >= 0.5, or 80% of the shorter prompt's 5-grams
  inside the other (templated copies such as a pasted awesome-chatgpt-prompts set-up).
Prints one line per flagged prompt and exits 1 when any is flagged, 2 on bad input.
`near_duplicates.py translated labels/translated_*.jsonl` checks translated labels instead, by
character 5-grams (see `translated`).
Stdlib only; reads ../shared/data/raw (or $POINTSMAN_RAW).
"""
import glob
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import unlabelled_prompts as up  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "training-data"
JACCARD, CONTAINMENT, SHINGLE = 0.5, 0.8, 5


def shingles(text):
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}


def batch_prompts(listing, label_files):
    """(id, prompt) of the labelled ids, in file order; exits naming any id the listing lacks."""
    ids = []
    for f in label_files:
        for n, line in enumerate(open(f, encoding="utf-8"), 1):
            try:
                ids.append(json.loads(line)["id"])
            except (ValueError, KeyError) as e:
                sys.exit(f"error: {f}:{n}: not a label row with an id ({e})")
    text = dict(up.SOURCES[listing]())
    missing = [i for i in ids if i not in text]
    if missing:
        print(f"error: {len(missing)} ids are not in listing {listing}, e.g. {missing[:3]}", file=sys.stderr)
        sys.exit(2)
    return [(i, text[i]) for i in ids]


def reference_prompts(skip_ids):
    refs = []
    for f in sorted(glob.glob(str(DATA / "tasks/*.jsonl")) + glob.glob(str(DATA / "eval/*.jsonl"))):
        for line in open(f, encoding="utf-8"):
            r = json.loads(line)
            if r["id"] not in skip_ids:
                refs.append((f"{Path(f).name}:{r['id']}", r["prompt"]))
    for line in open(up.RAW / "alpaca_eval/instructions.jsonl", encoding="utf-8"):
        r = json.loads(line)
        refs.append((f"alpaca:{r['instruction_idx']}", r["instruction"]))
    return refs


def char_grams(text, n=5):
    """Character n-grams of the normalised text: the word shingles above see a
    Chinese or Japanese sentence as one word."""
    t = up._norm(text)
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


def translated(label_files):
    """`near_duplicates.py translated FILE...`: each translated-label row (labels/translated_*.jsonl)
    against every eval/ prompt (BELLE and MCoNaLa es/ja/ru included), every AlpacaEval instruction,
    tasks/nonenglish_real.jsonl and the other translated rows, by character 5-grams (Jaccard >= 0.5
    or 80% containment of the shorter; references under 20 characters only by exact text)."""
    batch = []
    for f in label_files:
        for n, line in enumerate(open(f, encoding="utf-8"), 1):
            try:
                r = json.loads(line)
                batch.append((r["id"], r["prompt"]))
            except (ValueError, KeyError) as e:
                sys.exit(f"error: {f}:{n}: not a translated-label row ({e})")
    refs = [(f"{Path(f).name}:{r['id']}", r["prompt"])
            for f in sorted(glob.glob(str(DATA / "eval/*.jsonl"))) + [str(DATA / "tasks/nonenglish_real.jsonl")]
            for r in map(json.loads, open(f, encoding="utf-8"))]
    refs += [(f"alpaca:{r['instruction_idx']}", r["instruction"])
             for r in map(json.loads, open(up.RAW / "alpaca_eval/instructions.jsonl", encoding="utf-8"))]
    refs += batch
    index, grams = defaultdict(set), []
    for k, (_, p) in enumerate(refs):
        g = char_grams(p)
        grams.append(g)
        for x in g:
            index[x].add(k)
    flagged = 0
    for rid, p in batch:
        g = char_grams(p)
        shared = defaultdict(int)
        for x in g:
            for k in index.get(x, ()):
                shared[k] += 1
        hits = []
        for k, c in shared.items():
            if refs[k][0] == rid:
                continue
            other = grams[k]
            jac, cont = c / len(g | other), c / min(len(g), len(other))
            short = min(len(up._norm(p)), len(up._norm(refs[k][1]))) < 20
            if (jac >= JACCARD or cont >= CONTAINMENT) and (not short or up._norm(p) == up._norm(refs[k][1])):
                hits.append((f"jacc={jac:.2f} cont={cont:.2f}", refs[k][0]))
        if hits:
            flagged += 1
            print(rid, hits[:4])
    print("checked", len(batch), "flagged", flagged)
    sys.exit(1 if flagged else 0)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "translated":
        translated(sys.argv[2:])
    if len(sys.argv) < 3 or sys.argv[1] not in up.SOURCES:
        sys.exit(f"usage: near_duplicates.py LISTING LABELFILE...  (LISTING one of {sorted(up.SOURCES)})")
    batch = batch_prompts(sys.argv[1], sys.argv[2:])
    refs = reference_prompts({i for i, _ in batch})
    exact, prefix, index = {}, {}, defaultdict(set)
    ref_shingles = []
    for k, (rid, p) in enumerate(refs):
        exact.setdefault(up._norm(p), rid)
        if len(up._prefix(p)) >= 30:
            prefix.setdefault(up._prefix(p), rid)
        s = shingles(p)
        ref_shingles.append(s)
        for x in s:
            index[x].add(k)
    flagged = 0
    for a, (rid, p) in enumerate(batch):
        s = shingles(p)
        hits = []
        if up._norm(p) in exact:
            hits.append(("exact", exact[up._norm(p)]))
        if len(up._prefix(p)) >= 30 and up._prefix(p) in prefix:
            hits.append(("prefix60", prefix[up._prefix(p)]))
        shared = defaultdict(int)
        for x in s:
            for k in index.get(x, ()):
                shared[k] += 1
        for k, c in shared.items():
            other = ref_shingles[k]
            jac, cont = c / len(s | other), c / min(len(s), len(other))
            if jac >= JACCARD or cont >= CONTAINMENT:
                hits.append((f"jacc={jac:.2f} cont={cont:.2f}", refs[k][0]))
        for qid, q in batch[:a]:
            other = shingles(q)
            jac = len(s & other) / len(s | other)
            if jac >= JACCARD:
                hits.append((f"in-batch jacc={jac:.2f}", qid))
        if hits:
            flagged += 1
            print(rid, hits[:4])
    print("checked", len(batch), "flagged", flagged)
    sys.exit(1 if flagged else 0)


if __name__ == "__main__":
    main()
