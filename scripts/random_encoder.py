#!/usr/bin/env python3
"""Writes an encoder model directory with random weights in a real model's
shapes, for the GPU machine, which gets no real weights (what travels there
is 64 MiB with the repository; docs/PERFORMANCE.md, "CUDA").

    python3 scripts/random_encoder.py SRC OUT [--seed N]

SRC holds the real model's small files (config.json, tokenizer.json and
sentence-transformers' 1_Pooling/, sentence_bert_config.json,
config_sentence_transformers.json, modules.json where present); they are
copied to OUT, and OUT/model.safetensors gets every tensor a BERT or
XLM-RoBERTa encoder of that config reads, in f32: layer-norm weights 1 and
biases 0 (as transformers initialises them), every other tensor drawn from
N(0, 0.02) (the configs' initializer_range). The encoder reads it like any
model directory; its outputs mean nothing, its cost and its arithmetic are
the real model's.

Standard library only (the draws are one seeded block of 65,536 values,
tiled with a per-tensor offset: independence does not matter here, speed
does; e5's 118 million values take seconds).
"""

import argparse
import array
import json
import pathlib
import random
import shutil
import struct
import sys

BLOCK = 65536


def tensors(cfg: dict):
    """(name, shape, kind) for every tensor the encoder reads."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    yield "embeddings.word_embeddings.weight", (cfg["vocab_size"], h), "normal"
    yield "embeddings.position_embeddings.weight", (cfg["max_position_embeddings"], h), "normal"
    yield "embeddings.token_type_embeddings.weight", (cfg.get("type_vocab_size", 2), h), "normal"
    yield "embeddings.LayerNorm.weight", (h,), "one"
    yield "embeddings.LayerNorm.bias", (h,), "zero"
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            yield p + f"attention.self.{part}.weight", (h, h), "normal"
            yield p + f"attention.self.{part}.bias", (h,), "zero"
        yield p + "attention.output.dense.weight", (h, h), "normal"
        yield p + "attention.output.dense.bias", (h,), "zero"
        yield p + "attention.output.LayerNorm.weight", (h,), "one"
        yield p + "attention.output.LayerNorm.bias", (h,), "zero"
        yield p + "intermediate.dense.weight", (inter, h), "normal"
        yield p + "intermediate.dense.bias", (inter,), "zero"
        yield p + "output.dense.weight", (h, inter), "normal"
        yield p + "output.dense.bias", (h,), "zero"
        yield p + "output.LayerNorm.weight", (h,), "one"
        yield p + "output.LayerNorm.bias", (h,), "zero"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("out", type=pathlib.Path)
    p.add_argument("--seed", type=int, default=17)
    a = p.parse_args()

    for required in ("config.json", "tokenizer.json"):
        if not (a.src / required).is_file():
            print(f"random_encoder: {a.src / required} is missing", file=sys.stderr)
            return 2
    cfg = json.loads((a.src / "config.json").read_text())
    if cfg.get("model_type") not in ("bert", "xlm-roberta"):
        print(f"random_encoder: model_type {cfg.get('model_type')!r} is not bert or xlm-roberta", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    for item in a.src.iterdir():
        if item.name == "model.safetensors":
            continue
        if item.is_dir():
            shutil.copytree(item, a.out / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, a.out / item.name)

    rng = random.Random(a.seed)
    std = float(cfg.get("initializer_range", 0.02))
    block = array.array("f", (rng.gauss(0.0, std) for _ in range(BLOCK))).tobytes()
    ones = array.array("f", [1.0]).tobytes()

    header, offset, specs = {}, 0, list(tensors(cfg))
    for name, shape, _ in specs:
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    params = offset // 4
    with open(a.out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, shape, kind in specs:
            count = 1
            for d in shape:
                count *= d
            if kind == "one":
                f.write(ones * count)
            elif kind == "zero":
                f.write(bytes(4 * count))
            else:
                start = rng.randrange(BLOCK) * 4
                rotated = block[start:] + block[:start]
                whole, rest = divmod(count, BLOCK)
                f.write(rotated * whole)
                f.write(rotated[: 4 * rest])
    print(f"random_encoder: {cfg['model_type']}, {len(specs)} tensors, {params:,} parameters -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
