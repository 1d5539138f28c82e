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

`GET /stats` returns {"requests": {model: count}, "auth": {model: last
Authorization header or null}, "last_request": {model: last JSON body}};
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
        if not self.path.endswith("/chat/completions"):
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
            STATS["auth"][model] = self.headers.get("Authorization")
            STATS["last_request"][model] = body
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
