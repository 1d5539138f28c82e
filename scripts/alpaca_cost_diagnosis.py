#!/usr/bin/env python3
"""Why routing on AlpacaEval pays more than the policy expects.

AlpacaEval costs are per row (answer length x list price), and the prompts
on which a cheap model scores low are the ones GPT-4-turbo answers at
length. A router that sends those prompts up pays more than the model's
mean cost, which is all the policy sees. This prints, for a few cheap
models, the correlation of their score with GPT-4-turbo's cost per row
and GPT-4-turbo's mean cost on the thirds of prompts where that model
scores lowest and highest; and, given an eval report directory
(`pointsman eval ... --report DIR`), for each target of the `pointsman`
router the cost it paid against the cost of the same per-model shares at
each model's mean cost.

    python3 scripts/alpaca_cost_diagnosis.py target/eval-data/alpaca_eval.jsonl [REPORT_DIR]
"""
import json
import math
import statistics as st
import sys

STRONG = "gpt4_1106_preview"
CHEAP = ["claude-instant-1.2", "Mixtral-8x7B-Instruct-v0.1_concise", "OpenHermes-2.5-Mistral-7B"]


def corr(a, b):
    ma, mb = st.mean(a), st.mean(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return num / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def main():
    rows = [json.loads(line) for line in open(sys.argv[1])]
    n_models = max(len(r["outcomes"]) for r in rows)
    rows = [r for r in rows if len(r["outcomes"]) == n_models]
    strong_cost = [r["outcomes"][STRONG]["cost_usd"] for r in rows]
    print(f"{len(rows)} rows with every model; {STRONG} mean cost {st.mean(strong_cost):.5f} USD")
    print("| cheap model | corr(score, GPT-4-turbo cost) | GPT-4-turbo cost, model's lowest third | highest third |")
    print("|---|---|---|---|")
    for m in CHEAP:
        s = [r["outcomes"][m]["score"] for r in rows]
        pairs = sorted(zip(s, strong_cost), key=lambda p: p[0])
        k = len(pairs) // 3
        low = st.mean(c for _, c in pairs[:k])
        high = st.mean(c for _, c in pairs[-k:])
        print(f"| {m} | {corr(s, strong_cost):.3f} | {low:.5f} | {high:.5f} |")
    if len(sys.argv) > 2:
        summary = json.load(open(sys.argv[2] + "/summary.json"))
        models = summary["models"]
        mean_cost = [st.mean(r["outcomes"][m]["cost_usd"] for r in rows) for m in models]
        mean_score = [st.mean(r["outcomes"][m]["score"] for r in rows) for m in models]
        r = summary["routers"]["pointsman"]
        print("\n| target | GPT-4-turbo share | cost paid (USD) | same shares at mean costs | ratio | quality | same shares at mean scores |")
        print("|---|---|---|---|---|---|---|")
        for t, (cost, q), shares in zip(r["settings"], r["points"], r["shares"]):
            if abs(t * 20 - round(t * 20)) > 1e-9 or not 0.55 <= t <= 0.8:
                continue
            at_mean = sum(s * c for s, c in zip(shares, mean_cost))
            q_mean = sum(s * c for s, c in zip(shares, mean_score))
            g = shares[models.index(STRONG)]
            print(f"| {t:.2f} | {g:.2f} | {cost:.5f} | {at_mean:.5f} | {cost / at_mean:.2f} | {q:.4f} | {q_mean:.4f} |")


if __name__ == "__main__":
    main()
