#!/usr/bin/env python3
"""A scriptable, OpenAI-compatible Chat Completions server for local development and tests.

It stands in for the LLM provider only; everything else in the stack is the real local
runtime. Standard library only.

  POST {base}/chat/completions   answers like OpenAI. By default the reply is
                                 "Stub reply to: <last user message>", with usage.
  POST /_stub/scenario           {"tag": "...", "steps": [step, ...]}: requests whose body
                                 contains the tag get the steps in order (the last repeats).
                                 A step is any of {"reply": str, "status": int, "body": str,
                                 "delay_ms": int, "headers": {..}, "malformed": true}.
  GET  /_stub/requests?tag=...   every recorded request containing the tag (all if omitted):
                                 [{"path", "authorization", "body"}] in arrival order.
  GET  /_stub/health             {"status": "ok"}

Usage: llm_stub.py [--port N] [--port-file PATH]
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
REQUESTS = []  # recorded completions requests
SCENARIOS = {}  # tag -> {"steps": [...], "next": int}


def estimate(text):
    return max(1, len(text) // 4)


def completion(content, model, prompt_text):
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or "stub-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": estimate(prompt_text),
            "completion_tokens": estimate(content),
            "total_tokens": estimate(prompt_text) + estimate(content),
        },
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response, sent at once: headers and body in separate small writes meet
    # the client's delayed ACK and cost ~40 ms per request, which would pollute benchmarks.
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet: tests read /_stub/requests instead
        pass

    def send_json(self, status, payload, headers=None, raw=None):
        body = raw.encode() if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8", "replace") if length else ""

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_stub/health":
            return self.send_json(200, {"status": "ok"})
        if url.path == "/_stub/requests":
            tag = parse_qs(url.query).get("tag", [None])[0]
            with LOCK:
                found = [r for r in REQUESTS if tag is None or tag in r["raw"]]
            return self.send_json(200, [{k: r[k] for k in ("path", "authorization", "body")} for r in found])
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        url = urlparse(self.path)
        raw = self.read_body()
        if url.path == "/_stub/scenario":
            spec = json.loads(raw)
            with LOCK:
                SCENARIOS[spec["tag"]] = {"steps": spec["steps"], "next": 0}
            return self.send_json(200, {"ok": True})
        if not url.path.endswith("/chat/completions"):
            return self.send_json(404, {"error": {"message": "not found"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send_json(400, {"error": {"message": "invalid JSON"}})
        step = {}
        with LOCK:
            REQUESTS.append({"path": url.path, "authorization": self.headers.get("Authorization"), "body": body, "raw": raw})
            for tag, scenario in SCENARIOS.items():
                if tag in raw:
                    steps = scenario["steps"]
                    step = steps[min(scenario["next"], len(steps) - 1)]
                    scenario["next"] += 1
                    break
        if step.get("delay_ms"):
            time.sleep(step["delay_ms"] / 1000)
        if step.get("malformed"):
            return self.send_json(200, None, raw='{"choices": [ this is not json')
        status = step.get("status", 200)
        if status != 200:
            raw_body = step.get("body", json.dumps({"error": {"message": "stub error", "type": "server_error"}}))
            return self.send_json(status, None, headers=step.get("headers"), raw=raw_body)
        messages = body.get("messages") or []
        last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        content = step.get("reply", "Stub reply to: " + last_user[:200])
        prompt_text = "".join(str(m.get("content", "")) for m in messages)
        self.send_json(200, completion(content, body.get("model"), prompt_text), headers=step.get("headers"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()
    ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 drops bursts of connections
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(port))
    print(f"LLM stand-in listening on http://127.0.0.1:{port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
