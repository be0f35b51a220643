#!/usr/bin/env python3
"""A scriptable LLM provider for local development and tests: OpenAI-compatible Chat
Completions, and the Anthropic Messages API.

It stands in for the LLM provider only; everything else in the stack is the real local
runtime. Standard library only. Any path prefix works (/v1, /p1/v1, ...), so one process can
play several providers.

  POST {base}/chat/completions   answers like OpenAI. By default the reply is
                                 "Stub reply to: <last user message[:200]>", with usage.
                                 With "stream": true in the body it streams the reply as
                                 Server-Sent Events (text/event-stream, HTTP/1.1 chunked, one
                                 flush per event, connection closed after the stream):
                                 chat.completion.chunk frames with the text in a few pieces,
                                 a final chunk with finish_reason, then, if
                                 stream_options.include_usage, a usage chunk with
                                 "choices": [], then "data: [DONE]".
  POST {base}/messages           answers like Anthropic (anthropic-version 2023-06-01), the
                                 same reply and the same scenario steps (see below). It first
                                 checks the wire rules and answers 400 invalid_request_error
                                 ("stub: <rule>") when the request has no x-api-key, another
                                 anthropic-version, an Authorization header, no positive integer
                                 max_tokens, no model, no messages, a message whose role is not
                                 user/assistant (e.g. "system"), two consecutive messages with
                                 the same role, a blank or empty content, tool_use/tool_result
                                 blocks without "tools", or a tool_use not answered by tool_result
                                 blocks at the start of the next message (or a tool_result that
                                 answers none). Refused requests are recorded, with "rejected".
                                 With "stream": true it streams named events: message_start
                                 (usage with output_tokens 1), ping, content_block_start/
                                 content_block_delta (text_delta)/content_block_stop for the
                                 text, then per tool call a tool_use block whose input comes as
                                 input_json_delta fragments (the first one empty), then
                                 message_delta (stop_reason, output_tokens) and message_stop.
  POST /_stub/scenario           {"tag": "...", "steps": [step, ...], "cycle"?: true,
                                 "path"?: "..."}: requests whose body contains the tag get the
                                 steps in order (the last repeats; with "cycle", they start over
                                 after the last). With "path", only requests whose path ends with
                                 it (e.g. "/p1/v1/messages"), and such a scenario goes before
                                 one without a path for the same request.
                                 A step is any of:
                                   "reply": str           the answer text (both modes)
                                   "status": int          answer this status with "body" (or
                                                          an OpenAI-style error), both modes
                                   "body": str            the raw body of a non-200 status
                                   "delay_ms": int        wait before answering (both modes)
                                   "first_byte_delay_ms": int  the same (both modes); named for
                                                          streams, where it delays the headers
                                   "headers": {..}        extra response headers
                                   "malformed": true      a 200 that is not JSON (streamed: a
                                                          data line that is not JSON, then end)
                                   "usage": {"prompt_tokens": n, "completion_tokens": m}
                                                          the usage reported (both modes)
                                   "tool_calls": [{"name": str, "arguments": obj | str}, ...]
                                                          answer by calling these tools
                                                          (finish_reason "tool_calls"; a
                                                          string is sent as is, an object as
                                                          its JSON), streamed as OpenAI does:
                                                          tool_calls deltas by index
                                   "reject_tools": true   answer 400 if the request has "tools",
                                                          as servers without tool calling do
                                 and, for streamed requests only:
                                   "chunks": [str, ...]   the text pieces (instead of "reply")
                                   "chunk_delay_ms": int  pause between text pieces
                                   "first_chunk_delay_ms": int  pause after the headers, before
                                                          the first piece (a model thinking)
                                   "finish_reason": str   of the final chunk (default "stop")
                                   "no_usage": true       no usage chunk even if requested
                                   "truncate_after": n    n pieces, then end the body cleanly
                                                          (no finish_reason, no [DONE])
                                   "reset_after": n       n pieces, then reset the connection
                                                          (SO_LINGER 0, close: a TCP RST)
                                   "stall_after": n       n pieces, then send nothing until the
                                                          client disconnects (or 120 s)
                                   "error_after": n       n pieces, then an in-band
                                                          {"error": {...}} event, then end
                                 and, for /messages only (the fields above mean the same there;
                                 "usage" also takes input_tokens, output_tokens,
                                 cache_read_input_tokens, cache_creation_input_tokens;
                                 "no_usage" and "finish_reason" do not apply):
                                   "stop_reason": str     of the message (default "end_turn", or
                                                          "tool_use" with tool_calls)
                                   "error_type": str      the type of the error body of a
                                                          "status" (default by status: 529
                                                          overloaded_error, 429 rate_limit_error,
                                                          401 authentication_error, 500
                                                          api_error, ...) and of the in-stream
                                                          error of "error_after" (default
                                                          overloaded_error)
                                   "error_message": str   its message
                                   "sse": [[event, data], ...]  stream exactly these events (data:
                                                          an object is sent as JSON, a string as
                                                          is) instead of the generated ones;
                                                          "chunk_delay_ms" and the *_after
                                                          options count these events
                                 With tool_calls, a /messages answer has a text block only if the
                                 step has "reply" (or "chunks"). "error_after": 0 sends
                                 message_start and ping, then the error, before any content.
  GET  /_stub/requests?tag=...   every recorded request containing the tag (all if omitted),
                                 in arrival order: [{"path", "authorization", "body", "stream",
                                 "received_at", "done_at", "closed_early", "closed_at"}], and for
                                 /messages also "x-api-key", "anthropic-version" (the headers,
                                 null when absent) and "rejected" (the broken rule, or null).
                                 Times are Unix seconds (float). done_at: when the scripted
                                 response was completely written (null before, or if never);
                                 closed_early: true when the client went away before that,
                                 false once written, null while running; closed_at: when the
                                 connection was seen closed (by the client, or by the stub at
                                 the end of a stream), null while open or kept alive.
  GET  /_stub/health             {"status": "ok"}

Usage: llm_stub.py [--port N] [--port-file PATH]
"""
import argparse
import io
import json
import re
import select
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
REQUESTS = []  # recorded completions requests
SCENARIOS = {}  # (tag, path or None) -> {"tag": str, "path": str | None, "steps": [...], "next": int}
RECORD_FIELDS = ("path", "authorization", "body", "stream", "received_at", "done_at", "closed_early", "closed_at")
ANTHROPIC_RECORD_FIELDS = ("x-api-key", "anthropic-version", "rejected")
STALL_LIMIT_S = 120
IN_BAND_ERROR = {"error": {"message": "stub in-band error", "type": "server_error"}}


def estimate(text):
    return max(1, len(text) // 4)


def usage_of(prompt_text, content, override):
    prompt = estimate(prompt_text)
    completion = estimate(content)
    if override:
        prompt = override.get("prompt_tokens", prompt)
        completion = override.get("completion_tokens", completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(content, model, prompt_text, usage_override=None, tool_calls=None):
    message = {"role": "assistant", "content": content}
    finish_reason = "stop"
    if tool_calls:
        message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
        finish_reason = "tool_calls"
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or "stub-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage_of(prompt_text, content if not tool_calls else json.dumps(tool_calls), usage_override),
    }


CALL_IDS = iter(range(1, 1 << 62))


def scripted_tool_calls(step):
    """The step's tool calls in the OpenAI wire shape, each with a fresh id."""
    calls = []
    for call in step.get("tool_calls") or []:
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        with LOCK:
            call_id = "call_stub_%d" % next(CALL_IDS)
        calls.append({"id": call_id, "type": "function", "function": {"name": call.get("name", ""), "arguments": arguments}})
    return calls


def pick_step(raw, path):
    """The next step of the first scenario whose tag the body contains, those scripted for
    this path first ({} when none). Call with LOCK held."""
    for scoped in (True, False):
        for scenario in SCENARIOS.values():
            if (scenario["path"] is not None) != scoped or (scoped and not path.endswith(scenario["path"])):
                continue
            if scenario["tag"] in raw:
                steps = scenario["steps"]
                if scenario.get("cycle"):
                    step = steps[scenario["next"] % len(steps)]
                else:
                    step = steps[min(scenario["next"], len(steps) - 1)]
                scenario["next"] += 1
                return step
    return {}


def split_text(text, pieces=4):
    """The text in up to `pieces` parts at word starts; they concatenate back to the text."""
    words = [w for w in re.split(r"(?<=\s)(?=\S)", text) if w]
    if not words:
        return []
    size = -(-len(words) // pieces)  # ceil
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


# --- the Anthropic Messages wire -------------------------------------------------------------

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ANTHROPIC_ERROR_MESSAGES = {"overloaded_error": "Overloaded", "api_error": "Internal server error"}


def anthropic_error(error_type, message=None):
    message = message or ANTHROPIC_ERROR_MESSAGES.get(error_type) or "stub " + error_type
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_stub"}


def anthropic_error_type(status):
    return ANTHROPIC_ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def blocks_of(content):
    """A message's content as a list of blocks (a string is one text block)."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def anthropic_wire_problem(headers, body):
    """The first rule of the Messages API the request breaks, or None."""
    if not headers.get("x-api-key"):
        return "missing x-api-key header"
    if headers.get("anthropic-version") != ANTHROPIC_VERSION:
        return "anthropic-version must be " + ANTHROPIC_VERSION
    if headers.get("Authorization") is not None:
        return "an Authorization header is not part of the native API"
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: a positive integer is required"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    tools_defined = bool(body.get("tools"))
    previous_role, pending = None, set()  # pending: tool_use ids the next message must answer
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return "messages.%d.role: %r is not user or assistant (system goes in the top-level system)" % (i, role)
        if role == previous_role:
            return "messages.%d: two consecutive %s messages" % (i, role)
        blocks = blocks_of(message.get("content"))
        if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
            return "messages.%d.content: a non-empty string or list of blocks is required" % i
        leading, in_lead = set(), True  # the tool_result blocks the content starts with
        for j, block in enumerate(blocks):
            kind = block.get("type")
            in_lead = in_lead and kind == "tool_result"
            if kind == "text" and not str(block.get("text") or "").strip():
                return "messages.%d.content.%d: text content blocks must contain non-whitespace text" % (i, j)
            if kind in ("tool_use", "tool_result") and not tools_defined:
                return "Requests which include tool_use or tool_result blocks must define tools."
            if kind == "tool_result":
                if block.get("tool_use_id") not in pending:
                    return "messages.%d.content.%d: unexpected tool_use_id in a tool_result block" % (i, j)
                if in_lead:
                    leading.add(block.get("tool_use_id"))
            if kind == "tool_use" and role != "assistant":
                return "messages.%d.content.%d: tool_use blocks belong to assistant messages" % (i, j)
        if pending - leading:
            return "messages.%d: tool_use ids were found without tool_result blocks immediately after" % i
        pending = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        previous_role = role
    return None


def text_of(content):
    """The text blocks of a message's content, joined."""
    blocks = blocks_of(content)
    if not isinstance(blocks, list):
        return ""
    return "".join(str(b.get("text") or "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def anthropic_prompt_text(body):
    system = body.get("system")
    parts = [system if isinstance(system, str) else text_of(system or [])]
    for message in body.get("messages") or []:
        for block in blocks_of(message.get("content")) or []:
            if block.get("type") == "tool_result":
                parts.append(str(block.get("content") or ""))
        parts.append(text_of(message.get("content")))
    return "".join(parts)


def anthropic_usage(prompt_text, content, override):
    usage = {
        "input_tokens": estimate(prompt_text),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": estimate(content),
    }
    override = override or {}
    for ours, theirs in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
        if ours in override:
            usage[theirs] = override[ours]
    usage.update({k: v for k, v in override.items() if k in usage})
    return usage


def scripted_tool_uses(step):
    """The step's tool calls as Anthropic sends them: a fresh id, and the arguments' JSON text
    (a string is sent as is when streamed)."""
    uses = []
    for call in step.get("tool_calls") or []:
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        with LOCK:
            use_id = "toolu_stub_%d" % next(CALL_IDS)
        uses.append({"id": use_id, "name": call.get("name", ""), "arguments": arguments})
    return uses


def tool_input(arguments):
    """What a JSON answer carries as `input`: always an object."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class ClientGone(Exception):
    """The client closed the connection before the response was complete."""


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
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8", "replace") if length else ""

    # --- the record of one completions request --------------------------------------------

    def note(self, **fields):
        with LOCK:
            self.entry.update(fields)

    def gone(self):
        self.note(closed_early=True, closed_at=time.time())
        self.close_connection = True

    def wait(self, seconds):
        """Sleeps, but returns early (False) when the client closes the connection meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            try:
                readable, _, _ = select.select([self.connection], [], [], left)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    return False  # EOF: the client closed its end
                if readable:
                    time.sleep(min(left, 0.05))  # unexpected bytes: keep waiting without spinning
            except (ConnectionResetError, OSError):
                return False

    # --- routes ----------------------------------------------------------------------------

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_stub/health":
            return self.send_json(200, {"status": "ok"})
        if url.path == "/_stub/requests":
            tag = parse_qs(url.query).get("tag", [None])[0]
            with LOCK:
                found = [
                    {k: r[k] for k in RECORD_FIELDS + r.get("extra", ())} for r in REQUESTS if tag is None or tag in r["raw"]
                ]
            return self.send_json(200, found)
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        received_at = time.time()
        url = urlparse(self.path)
        raw = self.read_body()
        if url.path == "/_stub/scenario":
            spec = json.loads(raw)
            path = spec.get("path")
            with LOCK:
                scenario = {"tag": spec["tag"], "path": path, "steps": spec["steps"], "next": 0}
                SCENARIOS[(spec["tag"], path)] = dict(scenario, cycle=bool(spec.get("cycle")))
            return self.send_json(200, {"ok": True})
        if url.path.endswith("/messages"):
            return self.anthropic(url, raw, received_at)
        if not url.path.endswith("/chat/completions"):
            return self.send_json(404, {"error": {"message": "not found"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send_json(400, {"error": {"message": "invalid JSON"}})
        if not isinstance(body, dict):
            body = {}
        stream = body.get("stream") is True
        self.entry = {
            "path": url.path,
            "authorization": self.headers.get("Authorization"),
            "body": body,
            "raw": raw,
            "stream": stream,
            "received_at": received_at,
            "done_at": None,
            "closed_early": None,
            "closed_at": None,
        }
        with LOCK:
            REQUESTS.append(self.entry)
            step = pick_step(raw, url.path)
        delay_ms = (step.get("delay_ms") or 0) + (step.get("first_byte_delay_ms") or 0)
        if delay_ms and not self.wait(delay_ms / 1000):
            return self.gone()
        messages = body.get("messages") or []
        last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        content = step.get("reply", "Stub reply to: " + str(last_user)[:200])
        prompt_text = "".join(str(m.get("content") or "") for m in messages)
        status = step.get("status", 200)
        tool_calls = scripted_tool_calls(step)
        if step.get("reject_tools") and "tools" in body:
            status = 400
            step = dict(step, body=json.dumps({"error": {"message": "this model does not support tools", "type": "invalid_request_error"}}))
        if step.get("malformed") and not stream:
            written = self.send_json(200, None, raw='{"choices": [ this is not json')
        elif status != 200:
            raw_body = step.get("body", json.dumps({"error": {"message": "stub error", "type": "server_error"}}))
            written = self.send_json(status, None, headers=step.get("headers"), raw=raw_body)
        elif not stream:
            answer = completion(content, body.get("model"), prompt_text, step.get("usage"), tool_calls)
            written = self.send_json(200, answer, headers=step.get("headers"))
        else:
            return self.stream(step, body, content, prompt_text, tool_calls)
        if written:
            self.note(done_at=time.time(), closed_early=False)
        else:
            self.gone()

    # --- streaming -------------------------------------------------------------------------

    def write_chunk(self, data):
        """One HTTP chunk, flushed at once (an empty `data` ends the chunked body)."""
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            raise ClientGone()

    def event(self, payload):
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.write_chunk(b"data: " + data.encode() + b"\n\n")

    def stream(self, step, body, content, prompt_text, tool_calls=None):
        model = body.get("model") or "stub-model"
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and not step.get("no_usage")
        pieces = step.get("chunks")
        if pieces is None:
            pieces = split_text(content)
        if tool_calls:
            pieces = []
        text = "".join(pieces)
        created = int(time.time())
        delay = (step.get("chunk_delay_ms") or 0) / 1000

        def chunk(delta, finish_reason=None):
            frame = {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if include_usage:
                frame["usage"] = None  # as OpenAI does on every chunk but the usage chunk
            return frame

        # The step ends early after this many pieces, in the way its option names.
        stops = [(k, step[k]) for k in ("truncate_after", "reset_after", "stall_after", "error_after") if k in step]
        mode, after = stops[0] if stops else (None, None)

        self.close_connection = True  # one stream per connection: its end is the connection's
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            for k, v in (step.get("headers") or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.flush()
            if step.get("malformed"):
                self.event('{"choices": [ this is not json')
                return self.end_stream()
            for i, piece in enumerate(pieces):
                if mode and i == after:
                    break
                thinking = (step.get("first_chunk_delay_ms") or 0) / 1000
                if i == 0 and thinking and not self.wait(thinking):
                    return self.gone()
                if i and delay and not self.wait(delay):
                    return self.gone()
                self.event(chunk({"role": "assistant", "content": piece} if i == 0 else {"content": piece}))
            if mode == "truncate_after":
                return self.end_stream()
            if mode == "reset_after":
                return self.reset()
            if mode == "stall_after":
                if not self.wait(STALL_LIMIT_S):
                    return self.gone()
                self.note(closed_early=False, closed_at=time.time())
                return  # 120 s passed: just close, without ending the body
            if mode == "error_after":
                self.event(IN_BAND_ERROR)
                return self.end_stream()
            for index, call in enumerate(tool_calls or []):
                # As OpenAI streams them: the id and name first, then the arguments in pieces.
                head = {"index": index, "id": call["id"], "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""}}
                self.event(chunk({"role": "assistant", "content": None, "tool_calls": [head]}))
                arguments = call["function"]["arguments"]
                half = len(arguments) // 2
                for part in (arguments[:half], arguments[half:]):
                    if part:
                        self.event(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
            finish = "tool_calls" if tool_calls else "stop"
            self.event(chunk({}, step.get("finish_reason", finish)))
            if include_usage:
                frame = chunk({})
                frame["choices"] = []
                frame["usage"] = usage_of(prompt_text, text, step.get("usage"))
                self.event(frame)
            self.event("[DONE]")
            self.end_stream()
        except ClientGone:
            self.gone()

    # --- Anthropic Messages ------------------------------------------------------------------

    def anthropic(self, url, raw, received_at):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.entry = {
            "path": url.path,
            "authorization": self.headers.get("Authorization"),
            "x-api-key": self.headers.get("x-api-key"),
            "anthropic-version": self.headers.get("anthropic-version"),
            "rejected": None,
            "body": body,
            "raw": raw,
            "stream": isinstance(body, dict) and body.get("stream") is True,
            "received_at": received_at,
            "done_at": None,
            "closed_early": None,
            "closed_at": None,
            "extra": ANTHROPIC_RECORD_FIELDS,
        }
        with LOCK:
            REQUESTS.append(self.entry)
        if isinstance(body, dict):
            problem = anthropic_wire_problem(self.headers, body)
        else:
            problem = "the body is not a JSON object"
        if problem:
            self.note(rejected=problem)
            return self.finish(self.send_json(400, anthropic_error("invalid_request_error", "stub: " + problem)))
        with LOCK:
            step = pick_step(raw, url.path)
        delay_ms = (step.get("delay_ms") or 0) + (step.get("first_byte_delay_ms") or 0)
        if delay_ms and not self.wait(delay_ms / 1000):
            return self.gone()
        messages = body["messages"]
        asked = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        last_user = next((text for text in reversed(asked) if text), "")
        content = step.get("reply", "Stub reply to: " + last_user[:200])
        prompt_text = anthropic_prompt_text(body)
        status = step.get("status", 200)
        uses = scripted_tool_uses(step)
        if step.get("reject_tools") and "tools" in body:
            status = 400
            refusal = anthropic_error("invalid_request_error", "this model does not support tools")
            step = dict(step, body=json.dumps(refusal))
        if step.get("malformed") and body.get("stream") is not True:
            return self.finish(self.send_json(200, None, raw='{"content": [ this is not json'))
        if status != 200:
            error = anthropic_error(step.get("error_type") or anthropic_error_type(status), step.get("error_message"))
            raw_body = step.get("body", json.dumps(error))
            return self.finish(self.send_json(status, None, headers=step.get("headers"), raw=raw_body))
        stop_reason = step.get("stop_reason", "tool_use" if uses else "end_turn")
        text_too = not uses or "reply" in step or "chunks" in step
        if body.get("stream") is True:
            return self.anthropic_stream(step, body, content if text_too else "", prompt_text, uses, stop_reason)
        blocks = [{"type": "text", "text": content}] if text_too else []
        for use in uses:
            blocks.append({"type": "tool_use", "id": use["id"], "name": use["name"], "input": tool_input(use["arguments"])})
        counted = content if text_too else ""
        counted += "".join(u["arguments"] for u in uses)
        answer = {
            "id": "msg_stub",
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or "stub-model",
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": anthropic_usage(prompt_text, counted, step.get("usage")),
        }
        return self.finish(self.send_json(200, answer, headers=step.get("headers")))

    def finish(self, written):
        if written:
            self.note(done_at=time.time(), closed_early=False)
        else:
            self.gone()

    def named_event(self, name, payload):
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.write_chunk(b"event: " + name.encode() + b"\ndata: " + data.encode() + b"\n\n")

    def anthropic_stream(self, step, body, content, prompt_text, uses, stop_reason):
        model = body.get("model") or "stub-model"
        pieces = step.get("chunks")
        if pieces is None:
            pieces = split_text(content)
        usage = anthropic_usage(prompt_text, "".join(pieces) + "".join(u["arguments"] for u in uses), step.get("usage"))
        delay = (step.get("chunk_delay_ms") or 0) / 1000
        stops = [(k, step[k]) for k in ("truncate_after", "reset_after", "stall_after", "error_after") if k in step]
        mode, after = stops[0] if stops else (None, None)
        scripted = step.get("sse")

        self.close_connection = True  # one stream per connection, as on the other endpoint
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            for k, v in (step.get("headers") or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.flush()
            if step.get("malformed"):
                self.named_event("content_block_delta", '{"type": "content_block_delta", this is not json')
                return self.end_stream()
            if scripted is None:
                message = {"id": "msg_stub", "type": "message", "role": "assistant", "model": model, "content": [],
                           "stop_reason": None, "stop_sequence": None, "usage": dict(usage, output_tokens=1)}
                self.named_event("message_start", {"type": "message_start", "message": message})
                self.named_event("ping", {"type": "ping"})
            events = scripted if scripted is not None else pieces
            opened = False
            for i, item in enumerate(events):
                if mode and i == after:
                    break
                thinking = (step.get("first_chunk_delay_ms") or 0) / 1000
                if i == 0 and thinking and not self.wait(thinking):
                    return self.gone()
                if i and delay and not self.wait(delay):
                    return self.gone()
                if scripted is not None:
                    self.named_event(item[0], item[1])
                    continue
                if not opened:  # lazily, so that an early error comes before any block
                    opened = True
                    self.named_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                             "content_block": {"type": "text", "text": ""}})
                self.named_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                         "delta": {"type": "text_delta", "text": item}})
            if mode == "truncate_after":
                return self.end_stream()
            if mode == "reset_after":
                return self.reset()
            if mode == "stall_after":
                if not self.wait(STALL_LIMIT_S):
                    return self.gone()
                self.note(closed_early=False, closed_at=time.time())
                return
            if mode == "error_after":
                error = anthropic_error(step.get("error_type") or "overloaded_error", step.get("error_message"))
                self.named_event("error", error)
                return self.end_stream()
            if scripted is not None:
                return self.end_stream()
            index = 0
            if opened:
                self.named_event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            for use in uses:
                # As Anthropic streams them: id and name first, then the input's JSON text in
                # fragments, the first one empty.
                head = {"type": "tool_use", "id": use["id"], "name": use["name"], "input": {}}
                start = {"type": "content_block_start", "index": index, "content_block": head}
                self.named_event("content_block_start", start)
                arguments = use["arguments"]
                half = len(arguments) // 2
                for fragment in [""] + [part for part in (arguments[:half], arguments[half:]) if part]:
                    delta = {"type": "input_json_delta", "partial_json": fragment}
                    self.named_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                             "delta": delta})
                self.named_event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            self.named_event("message_delta", {"type": "message_delta",
                                               "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                               "usage": {"output_tokens": usage["output_tokens"]}})
            self.named_event("message_stop", {"type": "message_stop"})
            self.end_stream()
        except ClientGone:
            self.gone()

    def end_stream(self):
        self.write_chunk(b"")
        now = time.time()
        self.note(done_at=now, closed_early=False, closed_at=now)

    def reset(self):
        """Closes with SO_LINGER 0, so the kernel sends RST instead of FIN."""
        now = time.time()
        self.note(done_at=now, closed_early=False, closed_at=now)
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The socket's file objects hold references to it; it closes for real only when
            # all of them are closed.
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass
        self.wfile = io.BytesIO()  # what the server still flushes and closes after us


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
