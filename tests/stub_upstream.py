#!/usr/bin/env python3
"""A stub OpenAI-compatible upstream for the gateway's tests (standard library only).

Usage: python3 tests/stub_upstream.py [--exit-on-eof]

Binds 127.0.0.1:0 and prints `LISTENING <port>` on stdout once bound. With
`--exit-on-eof` it exits when its stdin closes, so a test that dies (and
whose stdin pipe closes) leaves no stub behind.

`POST .../chat/completions` speaks OpenAI's chat-completions wire format:
a JSON `chat.completion` with `usage`, or with `"stream": true` SSE
`chat.completion.chunk` events and `data: [DONE]`, plus a final usage chunk
(`choices: []`) when `stream_options.include_usage` is true. The behaviour is
chosen by the `model` the stub receives (an upstream's `upstream_model`), so
a test injects faults through the upstream config alone:

  stub-ok             answers; the answer's text is the last user message
  stub-429, stub-500  that status (OpenAI error JSON) before any byte
  stub-400            400, an invalid request (must not fall back)
  stub-reset          closes the connection (RST) without answering
  stub-slow-<ms>      waits <ms> before answering as stub-ok
  stub-midstream      streams two chunks, then resets the connection
                      (non-streaming: resets after half the body)
  stub-stall-<ms>     streams two chunks, then waits <ms> before the rest
  stub-nodone         streams the whole answer but no `data: [DONE]`
  stub-garbage        200 with a body that is not JSON
  anything else       404 model_not_found

`POST .../messages` speaks Anthropic's Messages API (JSON, or its event
stream with `"stream": true`) for stub-ok, stub-429, stub-529 (overloaded),
stub-400, stub-reset, stub-midstream and stub-error-event (an `error` event
after the first text delta); `max_tokens` is required, as there.

`GET /stats` returns {"requests": {model: count}, "auth": {model: last
Authorization header or null; for /messages "x-api-key K; anthropic-version V"}, "last_request": {model: last JSON body}};
`POST /stats/reset` zeroes it.

Answers are deterministic (the id hashes the messages; `created` is fixed), so
a forwarded answer can be compared with a direct one byte for byte. Usage
counts are words: prompt_tokens = words in all messages' text,
completion_tokens = words in the answer.
"""

import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"requests": {}, "auth": {}, "last_request": {}}


def message_text(message):
    """The text of one chat message (a string, or a list of text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def answer_for(body):
    messages = body.get("messages") or []
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = message_text(user[-1]) if user else ""
    prompt_tokens = sum(len(message_text(m).split()) for m in messages if isinstance(m, dict))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(text.split()),
        "total_tokens": prompt_tokens + len(text.split()),
    }
    return text, usage


def answer_id(body):
    """Deterministic, so a test can compare a forwarded answer with a direct
    one byte for byte."""
    digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
    return "chatcmpl-stub-" + digest[:16]


# A fixed `created`, for the same reason.
CREATED = 1700000000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: tests read stdout
        pass

    # ----- plumbing -------------------------------------------------------
    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_error_json(self, status, message, type_, code):
        self.send_json(status, {"error": {"message": message, "type": type_, "param": None, "code": code}})

    def write_chunk(self, data):
        """One HTTP/1.1 chunk (so a cut-off stream is detectably incomplete)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def reset(self):
        """Close with RST: SO_LINGER 0, then close."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    # ----- endpoints ------------------------------------------------------
    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                snapshot = json.loads(json.dumps(STATS))
            self.send_json(200, snapshot)
        else:
            self.send_error_json(404, "no such path: %s" % self.path, "invalid_request_error", None)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path == "/stats/reset":
            with LOCK:
                for v in STATS.values():
                    v.clear()
            self.send_json(200, {"ok": True})
            return
        anthropic = self.path.endswith("/messages")
        if not anthropic and not self.path.endswith("/chat/completions"):
            self.send_error_json(404, "no such path: %s" % self.path, "invalid_request_error", None)
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.send_error_json(400, "body is not JSON", "invalid_request_error", None)
            return
        model = str(body.get("model"))
        with LOCK:
            STATS["requests"][model] = STATS["requests"].get(model, 0) + 1
            if anthropic:
                STATS["auth"][model] = "x-api-key %s; anthropic-version %s" % (
                    self.headers.get("x-api-key"), self.headers.get("anthropic-version"))
            else:
                STATS["auth"][model] = self.headers.get("Authorization")
            STATS["last_request"][model] = body
        if anthropic:
            self.behave_anthropic(model, body)
        else:
            self.behave(model, body)

    def behave(self, model, body):
        stream = body.get("stream") is True
        if model == "stub-429":
            self.send_error_json(429, "Rate limit reached (stub)", "requests", "rate_limit_exceeded")
        elif model == "stub-500":
            self.send_error_json(500, "The server had an error (stub)", "server_error", None)
        elif model == "stub-400":
            self.send_error_json(400, "Invalid request (stub)", "invalid_request_error", None)
        elif model == "stub-reset":
            self.reset()
        elif model == "stub-garbage":
            data = b"<html>not json</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif model.startswith("stub-slow-"):
            time.sleep(int(model[len("stub-slow-"):]) / 1000.0)
            self.answer(model, body, stream)
        elif model == "stub-midstream":
            self.answer(model, body, stream, cut=True)
        elif model.startswith("stub-stall-"):
            self.answer(model, body, stream, stall=int(model[len("stub-stall-"):]) / 1000.0)
        elif model == "stub-nodone":
            self.answer(model, body, stream, done=False)
        elif model == "stub-ok":
            self.answer(model, body, stream)
        else:
            self.send_error_json(404, "The model `%s` does not exist" % model, "invalid_request_error", "model_not_found")

    def answer(self, model, body, stream, cut=False, stall=0.0, done=True):
        text, usage = answer_for(body)
        ident = answer_id(body)
        created = CREATED
        if not stream:
            data = json.dumps({
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }],
                "usage": usage,
                "system_fingerprint": None,
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if cut:
                self.wfile.write(data[: len(data) // 2])
                self.reset()
                return
            self.wfile.write(data)
            self.wfile.flush()
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta, finish=None, choices=True, usage_value=None):
            obj = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
            }
            if include_usage:
                obj["usage"] = usage_value
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        words = text.split(" ")
        pieces = [words[0]] + [" " + w for w in words[1:]] if text else []
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": p}) for p in pieces]
        events.append(chunk({}, finish="stop"))
        if include_usage:
            events.append(chunk(None, choices=False, usage_value=usage))
        if done:
            events.append(b"data: [DONE]\n\n")

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, event in enumerate(events):
            if i == 2 and cut:
                self.reset()
                return
            if i == 2 and stall:
                time.sleep(stall)
            try:
                self.write_chunk(event)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client went away
        self.end_chunks()


    # ----- Anthropic's Messages API ------------------------------------
    def send_anthropic_error(self, status, type_, message):
        self.send_json(status, {"type": "error", "error": {"type": type_, "message": message}})

    def behave_anthropic(self, model, body):
        stream = body.get("stream") is True
        if model == "stub-429":
            self.send_anthropic_error(429, "rate_limit_error", "Rate limited (stub)")
        elif model == "stub-529":
            self.send_anthropic_error(529, "overloaded_error", "Overloaded (stub)")
        elif model == "stub-400":
            self.send_anthropic_error(400, "invalid_request_error", "Invalid request (stub)")
        elif model == "stub-reset":
            self.reset()
        elif model == "stub-midstream":
            self.answer_anthropic(model, body, stream, cut=True)
        elif model == "stub-error-event":
            self.answer_anthropic(model, body, stream, error_event=True)
        elif model == "stub-ok":
            self.answer_anthropic(model, body, stream)
        else:
            self.send_anthropic_error(404, "not_found_error", "model: %s" % model)

    def answer_anthropic(self, model, body, stream, cut=False, error_event=False):
        if not isinstance(body.get("max_tokens"), int):
            self.send_anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
            return
        messages = body.get("messages") or []
        user = [m for m in messages if m.get("role") == "user"]
        text = message_text(user[-1]) if user else ""
        system = body.get("system") or ""
        input_tokens = len(system.split()) + sum(len(message_text(m).split()) for m in messages)
        output_tokens = len(text.split())
        ident = "msg_" + answer_id(body)[len("chatcmpl-stub-"):]
        if not stream:
            self.send_json(200, {
                "id": ident, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            })
            return

        def event(name, data):
            return ("event: %s\ndata: %s\n\n" % (name, json.dumps(data))).encode()

        words = text.split(" ")
        pieces = [words[0]] + [" " + w for w in words[1:]] if text else []
        events = [
            event("message_start", {"type": "message_start", "message": {
                "id": ident, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
            event("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "text", "text": ""}}),
            event("ping", {"type": "ping"}),
        ]
        events += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": p}}) for p in pieces]
        events += [
            event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                    "usage": {"output_tokens": output_tokens}}),
            event("message_stop", {"type": "message_stop"}),
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, data in enumerate(events):
            if i == 4 and cut:
                self.reset()
                return
            if i == 4 and error_event:
                self.write_chunk(event("error", {"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded (stub)"}}))
                self.end_chunks()
                return
            try:
                self.write_chunk(data)
            except (BrokenPipeError, ConnectionResetError):
                return
        self.end_chunks()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main():
    server = Server(("127.0.0.1", 0), Handler)
    print("LISTENING %d" % server.server_address[1], flush=True)
    if "--exit-on-eof" in sys.argv[1:]:
        def watch():
            sys.stdin.read()
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
