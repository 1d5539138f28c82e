"""End-to-end checks of the HTTP gateway with the official `openai` client.

Run by crates/cli/tests/gateway_openai.rs against a real `pointsman serve
--http-listen` forwarding to tests/stub_upstream.py. Usage:

    python openai_checks.py GATEWAY_URL TOKEN STUB_URL

Every check asserts; the last stdout line is a JSON object of the decision
ids the Rust test then looks up in `store export`.
"""

import json
import sys

import openai

try:  # the HTTP client openai depends on (httpx2 in openai 3.x, httpx before)
    import httpx2 as httpx
except ImportError:
    import httpx

base, token, stub = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=30)
http = httpx.Client(base_url=base, timeout=30)
auth = {"authorization": "Bearer " + token}
ids = {}


def stats():
    return httpx.get(stub + "/stats").json()["requests"]


def reset_stats():
    httpx.post(stub + "/stats/reset")


def user(text):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def only(*models):
    return {"pointsman": {"constraints": {"allowed_models": list(models)}}}


def error_of(resp):
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


# /v1/models: the routing names, then every catalog model with an upstream.
names = [m.id for m in client.models.list().data]
assert names[:2] == ["pointsman", "pointsman/auto"], names
assert {"ok", "strong", "rate", "broken", "reset", "slow", "mid"} <= set(names), names
assert "unconfigured" not in names, names
print("ok models")

# Routing: the cheaper of the allowed models answers; the stub echoes the prompt.
raw = client.chat.completions.with_raw_response.create(
    model="pointsman", messages=user("route me: alpha"), extra_body=only("ok", "strong")
)
completion = raw.parse()
assert raw.headers["x-pointsman-model"] == "ok", raw.headers
assert completion.choices[0].message.content == "route me: alpha", completion
assert completion.usage.completion_tokens == 3, completion.usage
ids["routed"] = raw.headers["x-pointsman-decision-id"]
# The router's difficulty of the prompt, as /v1/route gives it (over every
# catalog model, whatever the allowed ones).
typical = float(raw.headers["x-pointsman-typical-failure"])
decided = http.post("/v1/route", json={"prompt": "route me: alpha"}, headers=auth).json()
assert 0.0 < typical < 1.0 and abs(typical - decided["typical_failure"]) < 1e-12, (typical, decided)
sent = httpx.get(stub + "/stats").json()["last_request"]["stub-ok"]
assert "pointsman" not in sent, "the pointsman object must be stripped before forwarding"
assert sent["model"] == "stub-ok", sent
print("ok routing")

# pointsman/auto routes too, with options from headers.
raw = client.chat.completions.with_raw_response.create(
    model="pointsman/auto",
    messages=[{"role": "user", "content": [{"type": "text", "text": "parts"}, {"type": "text", "text": "of text"}]}],
    extra_headers={"x-pointsman-allowed-models": "strong,ok", "x-pointsman-tenant": "team-a"},
)
assert raw.headers["x-pointsman-model"] == "ok", raw.headers
assert raw.parse().choices[0].message.content == "parts of text"  # the stub joins parts with spaces
print("ok auto-and-headers")

# A named catalog model is forwarded as is (and logged as a decision, unclassified).
raw = client.chat.completions.with_raw_response.create(model="strong", messages=user("named"))
assert raw.headers["x-pointsman-model"] == "strong", raw.headers
assert raw.parse().choices[0].message.content == "named"
ids["named"] = raw.headers["x-pointsman-decision-id"]
assert "x-pointsman-typical-failure" not in raw.headers, raw.headers  # no encoder pass, no estimate
print("ok named")

# Each fallback case: the faulty (cheaper) model is tried, then `ok` answers.
for faulty, stub_model in [("rate", "stub-429"), ("broken", "stub-500"), ("reset", "stub-reset"), ("slow", "stub-slow-3000")]:
    reset_stats()
    raw = client.chat.completions.with_raw_response.create(
        model="pointsman", messages=user("fall back from " + faulty), extra_body=only(faulty, "ok")
    )
    assert raw.headers["x-pointsman-model"] == "ok", (faulty, raw.headers)
    assert raw.parse().choices[0].message.content == "fall back from " + faulty
    tried = stats()
    assert tried.get(stub_model) == 1 and tried.get("stub-ok") == 1, (faulty, tried)
    ids["fallback_" + faulty] = raw.headers["x-pointsman-decision-id"]
print("ok fallbacks")

# Streaming passes the SSE through: the deltas rebuild the prompt, usage last.
raw = client.chat.completions.with_raw_response.create(
    model="pointsman", messages=user("stream these five words"), extra_body=only("ok", "strong"), stream=True
)
assert raw.headers["content-type"].startswith("text/event-stream"), raw.headers
ids["streamed"] = raw.headers["x-pointsman-decision-id"]
assert 0.0 <= float(raw.headers["x-pointsman-typical-failure"]) <= 1.0, raw.headers
text, usage = "", None
for chunk in raw.parse():
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
assert text == "stream these five words", text
assert usage is not None and usage.completion_tokens == 4, usage
print("ok streaming")

# Streaming falls back before the first byte as well.
reset_stats()
stream = client.chat.completions.create(
    model="pointsman", messages=user("stream after 429"), extra_body=only("rate", "ok"), stream=True
)
text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
assert text == "stream after 429", text
assert stats().get("stub-429") == 1
print("ok streaming-fallback")

# After the first byte there is no fallback: the stream ends with an error event.
raw = client.chat.completions.with_raw_response.create(model="mid", messages=user("cut me off please"), stream=True)
ids["midstream"] = raw.headers["x-pointsman-decision-id"]
got = []
try:
    for chunk in raw.parse():
        got.append(chunk)
    raise AssertionError("a mid-stream failure must raise")
except openai.APIError as e:
    assert "upstream" in str(e).lower() or "stream" in str(e).lower(), e
assert len(got) >= 1, got
print("ok midstream")

# Every model failing: 502 in OpenAI's shape, decision id still in the headers.
try:
    client.chat.completions.create(model="pointsman", messages=user("all fail"), extra_body=only("rate", "broken"))
    raise AssertionError("expected 502")
except openai.APIStatusError as e:
    assert e.status_code == 502, e
    assert error_of(e.response)["code"] == "upstream_failed", e.response.text
    ids["all_failed"] = e.response.headers["x-pointsman-decision-id"]
# Only a model that times out: 504.
try:
    client.chat.completions.create(model="slow", messages=user("too slow"))
    raise AssertionError("expected 504")
except openai.APIStatusError as e:
    assert e.status_code == 504, (e.status_code, e.response.text)
    assert error_of(e.response)["code"] == "upstream_timeout"
print("ok upstream-errors")

# Feedback: the model defaults to the one that answered.
r = http.post("/v1/feedback", json={"decision_id": ids["routed"], "score": 0.9}, headers=auth)
assert r.status_code == 200, r.text
assert r.json() == {"decision_id": ids["routed"], "model": "ok", "outcomes_for_decision": 1}, r.json()
r = http.post("/v1/feedback", json={"decision_id": ids["fallback_rate"], "model": "ok", "score": 1.0}, headers=auth)
assert r.json()["outcomes_for_decision"] == 2, r.json()  # rate's automatic failure, ok's score
r = http.post("/v1/feedback", json={"decision_id": ids["named"], "score": 0.5}, headers=auth)
assert r.json() == {"decision_id": ids["named"], "model": "strong", "outcomes_for_decision": 1}, r.json()
r = http.post("/v1/feedback", json={"decision_id": "no-such-decision", "score": 1.0}, headers=auth)
assert r.status_code == 404 and error_of(r)["param"] == "decision_id", r.text
r = http.post("/v1/feedback", json={"decision_id": ids["routed"], "score": 7}, headers=auth)
assert r.status_code == 400 and error_of(r)["param"] == "score", r.text
print("ok feedback")

# /v1/route: the decision only.
r = http.post("/v1/route", json={"prompt": "just decide", "target": 0.5, "tenant": "t"}, headers=auth)
assert r.status_code == 200, r.text
d = r.json()
for key in ["decision_id", "model", "fallbacks", "p_success", "expected_cost_usd", "candidates", "classification", "versions", "reason"]:
    assert key in d, (key, d)
assert d["target"] == 0.5 and d["versions"]["generation"] == 1, d
# The router's difficulty, 1 - the mean P of every catalog model; with no
# constraints every catalog model is a candidate.
mean_p = sum(c["p_success"] for c in d["candidates"]) / len(d["candidates"])
assert abs(d["typical_failure"] - (1 - mean_p)) < 1e-9, d
r = http.post("/v1/route", json={"prompt": "x", "target": 2}, headers=auth)
assert r.status_code == 400 and error_of(r)["param"] == "target", r.text
r = http.post("/v1/route", json={"prompt": "x", "constraints": {"max_cost_usd": "cheap"}}, headers=auth)
assert r.status_code == 400 and error_of(r)["param"] == "constraints.max_cost_usd", r.text
r = http.post("/v1/route", json={"prompt": "x", "tragte": 0.5}, headers=auth)
assert r.status_code == 400 and "tragte" in error_of(r)["message"], r.text
r = http.post("/v1/route", json={"target": 0.5}, headers=auth)
assert r.status_code == 400 and error_of(r)["param"] == "prompt", r.text
print("ok route")

# Auth: a wrong key and a missing header are 401 in OpenAI's shape.
bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong-" + token, max_retries=0)
try:
    bad.models.list()
    raise AssertionError("expected 401")
except openai.AuthenticationError as e:
    assert e.status_code == 401
r = http.get("/v1/models")
assert r.status_code == 401 and error_of(r)["type"] == "authentication_error", r.text
r = http.post("/v1/route", json={"prompt": "x"}, headers={"authorization": "bearer " + token})
assert r.status_code == 200, "the scheme is case-insensitive: " + r.text
print("ok auth")

# Bad input, each in OpenAI's error shape.
def chat_raw(body, headers=None):
    payload = {"content": body} if isinstance(body, (str, bytes)) else {"json": body}
    return http.post("/v1/chat/completions", headers=headers or auth, **payload)

r = chat_raw("{not json")
assert r.status_code == 400 and error_of(r)["param"] == "body", r.text
r = chat_raw("[1, 2]")
assert r.status_code == 400, r.text
try:
    client.chat.completions.create(model="nope", messages=user("x"))
    raise AssertionError("expected 404")
except openai.NotFoundError as e:
    assert error_of(e.response)["code"] == "model_not_found", e.response.text
r = chat_raw({"model": "pointsman"})
assert r.status_code == 400 and error_of(r)["param"] == "messages", r.text
r = chat_raw({"model": "pointsman", "messages": [{"role": "system", "content": "no user"}]})
assert r.status_code == 400 and error_of(r)["param"] == "messages", r.text
r = chat_raw({"messages": user("no model")})
assert r.status_code == 400 and error_of(r)["param"] == "model", r.text
r = chat_raw({"model": "pointsman", "messages": user("x"), "pointsman": {"target": 3}})
assert r.status_code == 400 and error_of(r)["param"] == "target", r.text
r = chat_raw({"model": "pointsman", "messages": user("x"), "pointsman": {"bogus": 1}})
assert r.status_code == 400 and error_of(r)["param"].startswith("pointsman"), r.text
r = chat_raw({"model": "strong", "messages": user("x"), "pointsman": {"target": 3}})
assert r.status_code == 400 and error_of(r)["param"] == "target", "a named model's options are checked too: " + r.text
r = chat_raw({"model": "pointsman", "messages": user("x")}, headers={**auth, "x-pointsman-target": "high"})
assert r.status_code == 400 and error_of(r)["param"] == "x-pointsman-target", r.text
r = chat_raw({"model": "pointsman", "messages": user("y" * 5000)})
assert r.status_code == 413 and error_of(r)["param"] == "messages[1].content", r.text
r = chat_raw({"model": "pointsman", "messages": user("z"), "padding": "p" * 40000})
assert r.status_code == 413 and error_of(r)["code"] == "body_too_large", r.text
r = chat_raw({"model": "unconfigured", "messages": user("x")})
assert r.status_code == 503 and error_of(r)["code"] == "no_upstream", r.text
r = chat_raw({"model": "bad", "messages": user("x")})
assert r.status_code == 400, "an upstream 4xx is passed through, not retried: " + r.text
r = http.get("/v1/nowhere", headers=auth)
assert r.status_code == 404, r.text
print("ok bad-input")

print(json.dumps(ids))
