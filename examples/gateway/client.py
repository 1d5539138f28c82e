"""The application side of examples/gateway/e2e.sh: an unmodified OpenAI
SDK client pointed at Pointsman, then feedback for each answer.

    python client.py http://127.0.0.1:8080
"""

import sys

import openai

try:  # the HTTP client openai depends on (httpx2 in openai 3.x, httpx before)
    import httpx2 as httpx
except ImportError:
    import httpx

base = sys.argv[1]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused-without-a-token")

prompts = [
    "What is the capital of Australia?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Prove that there are infinitely many prime numbers.",
    "Translate 'good morning' into French.",
    "Summarise the plot of Hamlet in two sentences.",
    "Solve for x: 3x + 7 = 22.",
    "Write a haiku about autumn rain.",
    "Explain the difference between TCP and UDP.",
]
for prompt in prompts:
    # model="pointsman": Pointsman picks the model; everything else is a
    # plain chat completion.
    raw = client.chat.completions.with_raw_response.create(
        model="pointsman",
        messages=[{"role": "user", "content": prompt}],
        extra_body={"pointsman": {"target": 0.8}},
    )
    answer = raw.parse().choices[0].message.content
    decision_id = raw.headers["x-pointsman-decision-id"]
    model = raw.headers["x-pointsman-model"]
    # The application's own judgement of the answer (a toy one here: the
    # stub echoes the prompt, so "short prompts succeed").
    score = 1.0 if len(prompt) < 45 else 0.0
    r = httpx.post(base + "/v1/feedback", json={"decision_id": decision_id, "score": score})
    r.raise_for_status()
    print(f"{model:32} score {score}  {answer[:40]!r}")
