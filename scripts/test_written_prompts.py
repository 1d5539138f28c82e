#!/usr/bin/env python3
"""Tests for the written non-English prompts (stdlib unittest; run by scripts/test).

They are prompts the labelling session wrote from scratch, labelled by
construction, one source of their own (`written_multilingual`). These tests
check the shipped file (training-data/tasks-written/written.jsonl) and that
build_training_data.written refuses bad rows with the file, line and reason.

  python3 -m unittest discover -s scripts -p 'test_*.py'
"""
import json
import sys
import tempfile
import unittest
from collections import Counter
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
import build_training_data as btd  # noqa: E402
from test_translated_labels import held_texts, jsonl  # noqa: E402

WRITTEN = ROOT / "training-data" / "tasks-written" / "written.jsonl"


class ShippedWritten(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rows = jsonl(WRITTEN)
        cls.evals = {p.stem: jsonl(p) for p in sorted((ROOT / "training-data" / "eval").glob("*.jsonl"))}

    def test_one_source_known_tasks_non_english_and_said_so(self):
        self.assertTrue(self.rows)
        for r in self.rows:
            self.assertEqual(r["source"], btd.WRITTEN_SOURCE, r["id"])
            self.assertIn(r["task"], btd.TASKS, r["id"])
            self.assertNotEqual(r["lang"], "en", r["id"])
            self.assertEqual(r["written_by"], btd.WRITTEN_BY, r["id"])
        self.assertEqual(len({r["id"] for r in self.rows}), len(self.rows))

    def test_every_language_covers_every_task(self):
        by_lang = Counter(r["lang"] for r in self.rows)
        for lang in by_lang:
            tasks = {r["task"] for r in self.rows if r["lang"] == lang}
            self.assertEqual(tasks, btd.TASKS, lang)

    def test_none_repeats_an_evaluation_prompt(self):
        held = held_texts(self.evals)
        hits = [r["id"] for r in self.rows if btd.up._norm(r["prompt"]) in held]
        self.assertEqual(hits, [])


class BadWrittenRows(unittest.TestCase):
    """build_training_data.written names the file, line and reason of a bad row."""

    EVALS = {"sharegpt500": [{"id": "sharegpt500/x", "source": "sharegpt500", "task": "code",
                              "prompt": "held out  PROMPT"}]}

    def build(self, row):
        good = {"id": "written/zh/001", "lang": "zh", "task": "reasoning", "written_by": btd.WRITTEN_BY,
                "prompt": "一个谜题"}
        with tempfile.TemporaryDirectory() as tmp:
            with open(Path(tmp, "written_zh.jsonl"), "w", encoding="utf-8") as f:
                f.write(json.dumps(good, ensure_ascii=False) + "\n")
                f.write(json.dumps(dict(good, **row), ensure_ascii=False) + "\n")
            return btd.written(self.EVALS, Path(tmp), held=held_texts(self.EVALS))

    def refused(self, row, reason):
        with self.assertRaises(SystemExit) as e:
            self.build(row)
        self.assertIn("written_zh.jsonl:2", str(e.exception))
        self.assertIn(reason, str(e.exception))

    def test_a_good_row_is_its_own_source(self):
        out = self.build({"id": "written/zh/002"})
        self.assertEqual([r["source"] for r in out], [btd.WRITTEN_SOURCE] * 2)
        self.assertEqual(out[1]["task"], "reasoning")

    def test_bad_rows_are_refused_with_line_and_reason(self):
        self.refused({"id": "x2", "task": "poetry"}, "unknown task 'poetry'")
        self.refused({"id": "x2", "lang": "en"}, "not en")
        self.refused({"id": "x2", "written_by": "someone"}, "written_by must be")
        self.refused({}, "duplicate id")
        self.refused({"id": "x2", "prompt": " "}, "empty prompt")
        self.refused({"id": "x2", "prompt": "Held out prompt"}, "repeats an evaluation prompt (eval/sharegpt500)")

    def test_a_malformed_line_is_refused_with_its_number(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "written_ja.jsonl").write_text('{"id": "written/ja/001", "lang": "ja"\n', encoding="utf-8")
            with self.assertRaises(SystemExit) as e:
                btd.written(self.EVALS, Path(tmp), held=held_texts(self.EVALS))
        self.assertIn("written_ja.jsonl:1: not a written-prompt row", str(e.exception))


if __name__ == "__main__":
    unittest.main()
