#!/usr/bin/env python3
"""Lists the real user prompts that carry no task label, in a fixed order.

Used twice: to write the batches that were labelled by hand (see
training-data/labels/GUIDE.md), and by build_training_data.py to join those
labels back to the prompt text. Ids are stable: `<source>/<row id>`.
Stdlib only; reads ../shared/data/raw (or $POINTSMAN_RAW).
"""
import csv
import gzip
import json
import os
import random
import re
import sys
from pathlib import Path

RAW = Path(os.environ.get("POINTSMAN_RAW", Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"))
csv.field_size_limit(10**9)


def oasst():
    for line in open(RAW / "oasst_prompts/oasst_prompts_en.jsonl", encoding="utf-8"):
        row = json.loads(line)
        if row.get("synthetic") is True:
            continue
        yield f"oasst/{row['id']}", row["prompt"]


def sharegpt500():
    for row in json.load(open(RAW / "sharegpt_mlenergy/ShareGPT_V3_filtered_500.json", encoding="utf-8")):
        turns = row["conversations"]
        if turns and turns[0]["from"] == "human" and turns[0]["value"].strip():
            yield f"sharegpt500/{row['id']}", turns[0]["value"]


def _norm(text):
    return re.sub(r"\s+", " ", text).strip().lower()


def _prefix(text):
    return re.sub(r"\W+", " ", text).strip().lower()[:60]


def sharegpt92k():
    """First human turns of ShareGPT conversations (sharegpt92k_sample), for TRAINING.

    Disjoint from the sharegpt500 evaluation set: a row is dropped when its
    conversation id (id without the `_<chunk>` suffix) or its whitespace- and
    case-normalised text occurs in sharegpt500, or when its first 60 word
    characters match a sharegpt500 prompt's (templated near-duplicates); later
    duplicates of the same normalised text are dropped too.
    """
    ev = list(sharegpt500())
    ev_conv = {rid.split("/", 1)[1].rsplit("_", 1)[0] for rid, _ in ev}
    seen = {_norm(p) for _, p in ev}
    ev_prefix = {_prefix(p) for _, p in ev if len(_prefix(p)) >= 30}
    for line in open(RAW / "sharegpt92k_sample/sharegpt92k_first_turns.jsonl", encoding="utf-8"):
        row = json.loads(line)
        text = row["prompt"]
        key = _norm(text)
        if not key or row["id"].rsplit("_", 1)[0] in ev_conv or key in seen or _prefix(text) in ev_prefix:
            continue
        seen.add(key)
        yield f"sharegpt92k/{row['id']}", text


def awesome():
    """300 seeded picks among the TEXT prompts of awesome-chatgpt-prompts."""
    rows = list(csv.DictReader(open(RAW / "awesome_chatgpt_prompts/prompts.csv", encoding="utf-8", newline="")))
    idx = [i for i, r in enumerate(rows) if r["type"] == "TEXT" and r["prompt"].strip()]
    random.Random(7).shuffle(idx)
    for i in sorted(idx[:300]):
        yield f"awesome/{i}", rows[i]["prompt"]


def hh_first_turn(text):
    text = text.split("\n\nHuman: ", 1)[1] if "\n\nHuman: " in text else text
    return text.split("\n\nAssistant:", 1)[0].strip()


def hh_rlhf():
    """300 seeded picks among the unique first human turns of hh-rlhf harmless-base test."""
    seen, rows = set(), []
    for i, line in enumerate(gzip.open(RAW / "hh_rlhf/harmless-base_test.jsonl.gz", "rt", encoding="utf-8")):
        turn = hh_first_turn(json.loads(line)["chosen"])
        if turn and turn not in seen:
            seen.add(turn)
            rows.append((i, turn))
    random.Random(11).shuffle(rows)
    for i, turn in sorted(rows[:300]):
        yield f"hh_rlhf/{i}", turn


def self_instruct_user():
    """Instruction plus the first instance input, as a user would paste both."""
    for line in open(RAW / "self_instruct/user_oriented_instructions.jsonl", encoding="utf-8"):
        row = json.loads(line)
        inp = (row["instances"][0].get("input") or "").strip() if row["instances"] else ""
        yield f"self_instruct_user/{row['id']}", row["instruction"] + ("\n\n" + inp if inp else "")


def _first_human_turns(fname):
    """(id, first human turn) of a ShareGPT JSON file from sharegpt_mlenergy/."""
    for row in json.load(open(RAW / "sharegpt_mlenergy" / fname, encoding="utf-8")):
        turns = row["conversations"]
        if turns and turns[0]["from"] == "human" and turns[0]["value"].strip():
            yield row["id"], turns[0]["value"]


def _disjoint(rows, earlier):
    """Drops rows that repeat an evaluation set or an earlier training source.

    Same rule as sharegpt92k: a row goes when its conversation id (id without
    any `_<chunk>` suffix) or its normalised text occurs in sharegpt500, or its
    first 60 word characters match a sharegpt500 prompt's; it also goes when its
    normalised text is an AlpacaEval instruction (routing evaluation only), occurs
    in an earlier training source (`earlier`: prompt iterables) or earlier in the
    same file.
    """
    ev = list(sharegpt500())
    ev_conv = {rid.split("/", 1)[1].rsplit("_", 1)[0] for rid, _ in ev}
    seen = {_norm(p) for _, p in ev}
    seen |= {_norm(json.loads(line)["instruction"])
             for line in open(RAW / "alpaca_eval/instructions.jsonl", encoding="utf-8")}
    for source in earlier:
        seen |= {_norm(p) for _, p in source}
    ev_prefix = {_prefix(p) for _, p in ev if len(_prefix(p)) >= 30}
    for rid, text in rows:
        key = _norm(text)
        if not key or rid.rsplit("_", 1)[0] in ev_conv or key in seen or _prefix(text) in ev_prefix:
            continue
        seen.add(key)
        yield rid, text


def _earlier_sources():
    return [sharegpt92k(), oasst(), awesome(), hh_rlhf(), self_instruct_user()]


def sg90k():
    """First human turns of ml-energy's sg_90k sample (English-filtered upstream, a few are not), for TRAINING.

    Disjoint from sharegpt500, AlpacaEval and the earlier hand-labelled sources (see `_disjoint`).
    """
    rows = _first_human_turns("sg_90k_part1_html_cleaned_lang_first_sampled_sorted.json")
    for rid, text in _disjoint(rows, _earlier_sources()):
        yield f"sg90k/{rid}", text


def sharegpt1000():
    """First human turns of ml-energy's ShareGPT_V3_filtered_1000, for TRAINING.

    Disjoint from sharegpt500, AlpacaEval, the earlier hand-labelled sources and sg90k (see `_disjoint`).
    """
    rows = _first_human_turns("ShareGPT_V3_filtered_1000.json")
    for rid, text in _disjoint(rows, _earlier_sources() + [sg90k()]):
        yield f"sharegpt1000/{rid}", text


def awesome_rest():
    """The TEXT prompts of awesome-chatgpt-prompts outside the 300 seeded picks of `awesome` (and not repeating one)."""
    rows = list(csv.DictReader(open(RAW / "awesome_chatgpt_prompts/prompts.csv", encoding="utf-8", newline="")))
    picked = dict(awesome())
    picked_text = {_norm(p) for p in picked.values()}
    for i, r in enumerate(rows):
        if (r["type"] == "TEXT" and r["prompt"].strip() and f"awesome/{i}" not in picked
                and _norm(r["prompt"]) not in picked_text):
            yield f"awesome/{i}", r["prompt"]


def hh_rlhf_rest():
    """The unique first human turns of hh-rlhf harmless-base test outside the 300 seeded picks of `hh_rlhf`, for
    TRAINING; disjoint from sharegpt500, AlpacaEval and the earlier sources (see `_disjoint`)."""
    seen, rows = set(), []
    for i, line in enumerate(gzip.open(RAW / "hh_rlhf/harmless-base_test.jsonl.gz", "rt", encoding="utf-8")):
        turn = hh_first_turn(json.loads(line)["chosen"])
        if turn and turn not in seen:
            seen.add(turn)
            rows.append((str(i), turn))
    for rid, text in _disjoint(rows, _earlier_sources()):
        yield f"hh_rlhf/{rid}", text


def self_instruct_seed():
    """The 175 seed tasks of self-instruct (written by its authors), instruction plus first instance input as in
    `self_instruct_user`, for TRAINING; disjoint from sharegpt500, AlpacaEval and the earlier sources (see `_disjoint`)."""
    rows = []
    for line in open(RAW / "self_instruct/seed_tasks.jsonl", encoding="utf-8"):
        row = json.loads(line)
        inp = (row["instances"][0].get("input") or "").strip() if row["instances"] else ""
        rows.append((row["id"], row["instruction"] + ("\n\n" + inp if inp else "")))
    for rid, text in _disjoint(rows, _earlier_sources()):
        yield f"self_instruct_seed/{rid}", text


SOURCES = {
    "oasst": oasst,
    "sharegpt500": sharegpt500,
    "sharegpt92k": sharegpt92k,
    "awesome": awesome,
    "hh_rlhf": hh_rlhf,
    "self_instruct_user": self_instruct_user,
    "sg90k": sg90k,
    "sharegpt1000": sharegpt1000,
    "awesome_rest": awesome_rest,
    "self_instruct_seed": self_instruct_seed,
    "hh_rlhf_rest": hh_rlhf_rest,
}


def main():
    """`unlabelled_prompts.py SOURCE [START END]` prints JSON lines {id, prompt}."""
    source = sys.argv[1]
    rows = list(SOURCES[source]())
    start, end = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (0, len(rows))
    for rid, prompt in rows[start:end]:
        print(json.dumps({"id": rid, "prompt": prompt}, ensure_ascii=False))


if __name__ == "__main__":
    main()
