#!/usr/bin/env python3
"""Writes the reference embedding values pinned in crates/classifier/tests.

Run in a throwaway venv: pip install sentence-transformers; then
`HF_HUB_OFFLINE=1 python scripts/reference_embeddings.py models/all-MiniLM-L6-v2`.
Not part of CI (it needs torch)."""
import sentence_transformers, torch, json, sys
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu")
sents = ["Write a Python function that reverses a linked list.",
         "What is the capital of Australia?",
         "Translate to German: The goods cost less than 20 euros."]
e = m.encode(sents, normalize_embeddings=False)
out = {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__, "max_seq_length": m.max_seq_length,
       "sentences": sents, "dims": [0,1,2,100,383], "values": [[float(v[i]) for i in [0,1,2,100,383]] for v in e],
       "norms": [float((v**2).sum()**0.5) for v in e]}
print(json.dumps(out, indent=1))
