#!/usr/bin/env python3
"""Near-duplicate check for a new hand-label batch, run before it is committed.

`near_duplicates.py LISTING LABELFILE...` looks up the prompts of LABELFILE's ids in
`unlabelled_prompts.py` listing LISTING and compares each with every prompt of
training-data/tasks/ and training-data/eval/ (other than itself) and AlpacaEval, and
with the earlier prompts of the batch. It flags the same normalised text, the same first
60 word characters, and near duplicates: word 5-gram Jaccard >= 0.5 or 80% of the
shorter prompt's 5-grams inside the other (templated copies). Prints one line per flagged
prompt and exits 1 when any is flagged. Stdlib only; reads ../shared/data/raw.
"""
import json, re, sys, glob, subprocess
from collections import defaultdict
sys.path.insert(0, str(__import__('pathlib').Path(__file__).parent))
import unlabelled_prompts as up
listing = sys.argv[1]; files = sys.argv[2:]
new_ids = set()
for f in files:
    for l in open(f): new_ids.add(json.loads(l)['id'])
text = {i: p for i, p in up.SOURCES[listing]() if i in new_ids}
def words(t): return re.findall(r'\w+', t.lower())
def sh(t, n=5):
    w = words(t)
    return {' '.join(w[i:i+n]) for i in range(max(1, len(w)-n+1))}
idx = defaultdict(set); ref = []
ROOT = up.Path(__file__).resolve().parents[1] / 'training-data'
for f in sorted(glob.glob(str(ROOT / 'tasks/*.jsonl')) + glob.glob(str(ROOT / 'eval/*.jsonl'))):
    for l in open(f):
        r = json.loads(l)
        if r['id'] in new_ids: continue
        ref.append((f.split('/')[-1] + ':' + r['id'], r['prompt']))
for l in open(up.RAW / 'alpaca_eval/instructions.jsonl'):
    r = json.loads(l); ref.append(('alpaca:' + str(r['instruction_idx']), r['instruction']))
norm = {}; pre = {}
for k, (rid, p) in enumerate(ref):
    norm.setdefault(up._norm(p), rid)
    if len(up._prefix(p)) >= 30: pre.setdefault(up._prefix(p), rid)
    for s in sh(p): idx[s].add(k)
refsh = {}
bad = 0
# also within-batch duplicates
items = list(text.items())
for a, (i, p) in enumerate(items):
    hits = []
    if up._norm(p) in norm: hits.append(('exact', norm[up._norm(p)]))
    if up._prefix(p) in pre and len(up._prefix(p)) >= 30: hits.append(('prefix60', pre[up._prefix(p)]))
    s = sh(p); cnt = defaultdict(int)
    for x in s:
        for k in idx.get(x, ()): cnt[k] += 1
    for k, c in cnt.items():
        s2 = sh(ref[k][1]); j = c / len(s | s2)
        if j >= 0.5 or c / max(1, min(len(s), len(s2))) >= 0.8:
            hits.append((f'jacc={j:.2f} cont={c/max(1,min(len(s),len(s2))):.2f}', ref[k][0]))
    for b in range(a):
        j2, q = items[b]
        s2 = sh(q); c = len(s & s2)
        if c / len(s | s2) >= 0.5: hits.append((f'in-batch jacc={c/len(s|s2):.2f}', j2))
    if hits:
        bad += 1
        print(i, hits[:4])
print('checked', len(items), 'flagged', bad)
sys.exit(1 if bad else 0)
