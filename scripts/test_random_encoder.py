"""scripts/random_encoder.py writes a loadable safetensors file in the real
models' shapes (the GPU check's stand-in for weights that cannot travel)."""

import json
import pathlib
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "random_encoder.py"
# Tensors the real files hold that no encoder here reads.
UNREAD = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}


def header(path: pathlib.Path) -> dict:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def run(src: pathlib.Path, out: pathlib.Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), str(src), str(out)], check=True, capture_output=True)


class RandomEncoder(unittest.TestCase):
    def test_a_tiny_config_gets_every_tensor_with_its_shape_and_values(self):
        with tempfile.TemporaryDirectory() as d:
            src, out = pathlib.Path(d, "src"), pathlib.Path(d, "out")
            src.mkdir()
            cfg = {"model_type": "bert", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
                   "vocab_size": 50, "max_position_embeddings": 12, "type_vocab_size": 2}
            (src / "config.json").write_text(json.dumps(cfg))
            (src / "tokenizer.json").write_text("{}")
            run(src, out)
            self.assertEqual((out / "tokenizer.json").read_text(), "{}")
            h = header(out / "model.safetensors")
            self.assertEqual(len(h), 5 + 2 * 16)
            self.assertEqual(h["embeddings.word_embeddings.weight"]["shape"], [50, 8])
            self.assertEqual(h["encoder.layer.1.intermediate.dense.weight"]["shape"], [16, 8])
            self.assertEqual(h["encoder.layer.1.output.dense.weight"]["shape"], [8, 16])
            raw = (out / "model.safetensors").read_bytes()
            n = struct.unpack("<Q", raw[:8])[0]
            data = raw[8 + n:]
            end = max(t["data_offsets"][1] for t in h.values())
            self.assertEqual(len(data), end)

            def values(name):
                a, b = h[name]["data_offsets"]
                return struct.unpack(f"<{(b - a) // 4}f", data[a:b])

            self.assertEqual(set(values("embeddings.LayerNorm.weight")), {1.0})
            self.assertEqual(set(values("encoder.layer.0.output.dense.bias")), {0.0})
            w = values("encoder.layer.0.attention.self.query.weight")
            self.assertTrue(0.005 < (sum(x * x for x in w) / len(w)) ** 0.5 < 0.05, "N(0, 0.02) draws")

    def test_a_refused_model_type_and_a_missing_tokenizer(self):
        with tempfile.TemporaryDirectory() as d:
            src = pathlib.Path(d)
            (src / "config.json").write_text(json.dumps({"model_type": "t5"}))
            r = subprocess.run([sys.executable, str(SCRIPT), str(src), str(src / "o")], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("tokenizer.json is missing", r.stderr)
            (src / "tokenizer.json").write_text("{}")
            r = subprocess.run([sys.executable, str(SCRIPT), str(src), str(src / "o")], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("'t5' is not bert or xlm-roberta", r.stderr)

    def test_the_real_models_shapes(self):
        """The same names and shapes as the fetched models' files (less what
        no encoder reads), so what loads one loads the other."""
        checked = 0
        for name in ("all-MiniLM-L6-v2", "multilingual-e5-small"):
            real = ROOT / "models" / name
            if not (real / "model.safetensors").is_file():
                continue
            with tempfile.TemporaryDirectory() as d:
                src = pathlib.Path(d, "src")
                src.mkdir()
                for f in ("config.json", "tokenizer.json"):
                    (src / f).write_bytes((real / f).read_bytes())
                run(src, pathlib.Path(d, "out"))
                got = {k: v["shape"] for k, v in header(pathlib.Path(d, "out", "model.safetensors")).items()}
            want = {k: v["shape"] for k, v in header(real / "model.safetensors").items() if k not in UNREAD}
            self.assertEqual(got, want, name)
            checked += 1
        if checked == 0:
            self.skipTest("no fetched model (scripts/fetch-model)")


if __name__ == "__main__":
    unittest.main()
