#!/usr/bin/env python3
"""Tests for the translated labels (stdlib unittest; run by scripts/test).

A translation is a near duplicate of its original across languages, so it must
stay in its original's source group wherever sources are held out:
scripts/loso.py, and the trainer's leave-one-source-out and source folds, which
all group records by `source`. These tests check the shipped data
(training-data/tasks-translated/translated.jsonl), the LOSO split, and that
build_training_data.translated refuses bad rows with the file, line and reason.

  python3 -m unittest discover -s scripts -p 'test_*.py'
"""
import glob
import json
import sys
import tempfile
import unittest
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
import build_training_data as btd  # noqa: E402
import loso  # noqa: E402

TASKS = ROOT / "training-data" / "tasks"


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def held_texts(evals):
    """Evaluation-only texts: eval/ prompts, plus AlpacaEval where the raw data is present
    (../shared/data/raw is not part of a fresh clone; eval/ is)."""
    if (btd.RAW / "alpaca_eval" / "instructions.jsonl").is_file():
        return btd.evaluation_texts(evals)
    return {btd.up._norm(r["prompt"]): f"eval/{name}" for name, rows in evals.items() for r in rows}


class ShippedTranslations(unittest.TestCase):
    """training-data/tasks-translated{,-more}/translated.jsonl against the training files they were built from."""

    @classmethod
    def setUpClass(cls):
        cls.translated = [r for f in ("tasks-translated", "tasks-translated-more")
                          for r in jsonl(ROOT / "training-data" / f / "translated.jsonl")]
        cls.originals = {r["id"]: r for f in sorted(glob.glob(str(TASKS / "*.jsonl")))
                         if not f.endswith("translated.jsonl") for r in jsonl(f)}

    def test_each_translation_keeps_its_originals_source_and_task(self):
        self.assertGreater(len(self.translated), 0)
        for r in self.translated:
            o = self.originals.get(r["translated_from"])
            self.assertIsNotNone(o, r["id"])
            self.assertEqual(r["source"], o["source"], r["id"])
            self.assertEqual(r["task"], o["task"], r["id"])
            self.assertNotEqual(r["task"], "translation", r["id"])
            self.assertNotIn("translated_from", o, r["id"])

    def test_provenance_fields_say_what_they_are(self):
        for r in self.translated:
            self.assertEqual(r["translated_by"], "translated by the labelling session (not a native user prompt)")
            self.assertNotEqual(r["lang"], "en", r["id"])
            self.assertTrue(r["id"].startswith(f"translated/{r['lang']}/"), r["id"])
            self.assertNotEqual(r["prompt"], self.originals[r["translated_from"]]["prompt"], r["id"])

    def test_no_original_is_an_evaluation_prompt(self):
        evals = {Path(f).stem: jsonl(f) for f in glob.glob(str(ROOT / "training-data" / "eval" / "*.jsonl"))}
        held = held_texts(evals)
        for r in self.translated:
            o = self.originals[r["translated_from"]]
            self.assertNotIn(btd.up._norm(o["prompt"]), held, r["id"])
            self.assertNotEqual(o["source"], "self_instruct_user", r["id"])  # every one is an AlpacaEval instruction


def rec(rid, source, task, **extra):
    return dict({"id": rid, "prompt": f"prompt of {rid}", "source": source, "task": task}, **extra)


class LosoGrouping(unittest.TestCase):
    """scripts/loso.py holds a source's translations out with it, and trains on the others'."""

    def test_a_held_out_source_takes_its_translations_with_it(self):
        with tempfile.TemporaryDirectory() as tmp:
            tasks, work = Path(tmp, "tasks"), Path(tmp, "work")
            tasks.mkdir()
            with open(tasks / "alpha.jsonl", "w") as f:
                f.writelines(json.dumps(rec(f"alpha/{i}", "alpha", "code")) + "\n" for i in range(2))
            with open(tasks / "beta.jsonl", "w") as f:
                f.write(json.dumps(rec("beta/0", "beta", "math")) + "\n")
            with open(tasks / "translated.jsonl", "w") as f:  # one file, sources of the originals
                f.write(json.dumps(rec("translated/zh/alpha/0", "alpha", "code", translated_from="alpha/0")) + "\n")
                f.write(json.dumps(rec("translated/ja/beta/0", "beta", "math", translated_from="beta/0")) + "\n")
            by = loso.records_by_source([str(tasks)])
            self.assertEqual(sorted(by), ["alpha", "beta"])
            loso.prepare(str(work), by, ["alpha"])
            fold = work / "alpha"
            trained = {r["id"] for r in jsonl(fold / "tasks" / "rest.jsonl")}
            self.assertEqual(trained, {"beta/0", "translated/ja/beta/0"})
            held = jsonl(fold / "eval" / "held_out.jsonl")
            self.assertEqual({r["id"] for r in held}, {"alpha/0", "alpha/1"})
            self.assertTrue(all(r["source"] == "alpha" for r in held))
            held_tr = jsonl(fold / "eval" / "held_out_translated.jsonl")
            self.assertEqual([(r["id"], r["source"]) for r in held_tr], [("translated/zh/alpha/0", "alpha:translated")])


class BuildRefusesBadRows(unittest.TestCase):
    """build_training_data.translated names the file, line and reason of a bad row."""

    TRAIN = {"sg90k": [rec("sg90k/a", "sg90k", "reasoning")],
             "oasst": [rec("oasst/t", "oasst", "translation")],
             "self_instruct_user": [dict(rec("self_instruct_user/x", "self_instruct_user", "code"),
                                         prompt="Held out prompt")]}
    EVALS = {"sharegpt500": [rec("sharegpt500/x", "sharegpt500", "code") | {"prompt": "held out  PROMPT"}]}

    def build(self, row):
        good = {"id": "translated/zh/sg90k/a", "translated_from": "sg90k/a", "original_source": "sg90k",
                "lang": "zh", "task": "reasoning", "translated_by": btd.TRANSLATED_BY, "prompt": "一个谜题"}
        with tempfile.TemporaryDirectory() as tmp:
            with open(Path(tmp, "translated_zh.jsonl"), "w", encoding="utf-8") as f:
                f.write(json.dumps(good, ensure_ascii=False) + "\n")
                f.write(json.dumps(dict(good, **row), ensure_ascii=False) + "\n")
            return btd.translated(self.TRAIN, self.EVALS, Path(tmp), held=held_texts(self.EVALS))

    def refused(self, row, reason):
        with self.assertRaises(SystemExit) as e:
            self.build(row)
        self.assertIn("translated_zh.jsonl:2", str(e.exception))
        self.assertIn(reason, str(e.exception))

    def test_a_good_row_keeps_the_originals_source(self):
        out = self.build({"id": "translated/ja/sg90k/a", "lang": "ja"})
        self.assertEqual([r["source"] for r in out], ["sg90k", "sg90k"])
        self.assertEqual(out[1]["translated_from"], "sg90k/a")

    def test_bad_rows_are_refused_with_line_and_reason(self):
        self.refused({"id": "x2", "translated_from": "sg90k/nope"}, "not a training prompt")
        self.refused({"id": "x2", "task": "chat"}, "is not the original's 'reasoning'")
        self.refused({"id": "x2", "original_source": "oasst"}, "is not the original's 'sg90k'")
        self.refused({"id": "x2", "translated_from": "oasst/t", "original_source": "oasst", "task": "translation"},
                     "translation request")
        self.refused({"id": "x2", "translated_from": "self_instruct_user/x", "original_source": "self_instruct_user",
                      "task": "code"}, "repeats an evaluation prompt (eval/sharegpt500)")
        self.refused({"id": "x2", "translated_by": "someone"}, "translated_by must be")
        self.refused({"id": "x2", "lang": "en"}, "not en")
        self.refused({}, "duplicate id")
        self.refused({"id": "x2", "prompt": " "}, "empty prompt")


if __name__ == "__main__":
    unittest.main()
