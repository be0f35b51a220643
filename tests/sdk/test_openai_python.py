"""The official `openai` Python package, unmodified, against /v1 (pinned in scripts/setup.sh).

Run by tests/e2e.sh with the project's test venv: ATTIVE_BASE_URL, ATTIVE_ADMIN_TOKEN and
LLM_STUB_URL come from the harness. Each test makes its own workspace and key.
"""

import contextlib
import io
import json
import os
import re
import unittest
import urllib.request
import uuid

import openai

BASE = os.environ["ATTIVE_BASE_URL"]
OPERATOR = os.environ["ATTIVE_ADMIN_TOKEN"]
STUB = os.environ["LLM_STUB_URL"]
README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def call(method, url, token=None, body=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def workspace():
    ws = call("POST", f"{BASE}/api/admin/workspaces", OPERATOR, {"name": f"sdk-py-{uuid.uuid4().hex[:8]}"})
    admin = call("POST", f"{BASE}/api/admin/workspaces/{ws['id']}/admins", OPERATOR, {"name": "Py", "email": "py@example.com"})
    return admin["token"]


def key(admin, **extra):
    return call("POST", f"{BASE}/api/settings/api-keys", admin, {"name": f"sdk-{uuid.uuid4().hex[:6]}", **extra})["key"]


def script(tag, steps):
    call("POST", f"{STUB}/_stub/scenario", body={"tag": tag, "steps": steps})


def tag():
    return f"sdkpy-{uuid.uuid4().hex}"


class OpenAIPythonSDK(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin = workspace()
        cls.key = key(cls.admin)
        cls.agent = call("POST", f"{BASE}/api/settings/agents", cls.admin, {"name": "Analyst", "instructions": "Be brief."})["id"]
        # No automatic retries: each call is exactly one request, so errors surface at once.
        cls.client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=cls.key, max_retries=0)

    def test_a_plain_completion(self):
        t = tag()
        script(t, [{"reply": "Three deals.", "usage": {"prompt_tokens": 12, "completion_tokens": 3}}])
        resp = self.client.chat.completions.create(model=self.agent, messages=[{"role": "user", "content": f"Top deals? {t}"}])
        self.assertIsInstance(resp, openai.types.chat.ChatCompletion)
        self.assertEqual(resp.choices[0].message.content, "Three deals.")
        self.assertEqual(resp.choices[0].finish_reason, "stop")
        self.assertEqual(resp.model, self.agent)
        self.assertEqual(resp.usage.total_tokens, 15)
        self.assertTrue(resp.id.startswith("chatcmpl-"))
        # The extension is kept by the SDK and ignored by it.
        self.assertIn("requestId", resp.model_extra["attive"])

    def test_a_streamed_completion_through_the_stream_helper(self):
        t = tag()
        script(t, [{"chunks": ["Pipe", "line ", "is ", "fine."]}])
        seen = []
        with self.client.chat.completions.stream(
            model="attive-default", messages=[{"role": "user", "content": f"Pipeline? {t}"}]
        ) as stream:
            for event in stream:
                if event.type == "content.delta":
                    seen.append(event.delta)
            final = stream.get_final_completion()
        self.assertEqual("".join(seen), "Pipeline is fine.")
        self.assertGreaterEqual(len(seen), 2, "it arrived in pieces")
        self.assertEqual(final.choices[0].message.content, "Pipeline is fine.")
        self.assertEqual(final.choices[0].finish_reason, "stop")

    def test_a_caller_tool_round_trip(self):
        t = tag()
        script(t, [{"tool_calls": [{"name": "lookup_invoice", "arguments": {"number": "INV-7"}}]}, {"reply": "INV-7 is paid."}])
        tools = [{"type": "function", "function": {"name": "lookup_invoice", "parameters": {
            "type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]}}}]
        messages = [{"role": "user", "content": f"Is INV-7 paid? {t}"}]
        first = self.client.chat.completions.create(model="attive-default", messages=messages, tools=tools)
        self.assertEqual(first.choices[0].finish_reason, "tool_calls")
        call_ = first.choices[0].message.tool_calls[0]
        self.assertEqual(call_.function.name, "lookup_invoice")
        self.assertEqual(json.loads(call_.function.arguments), {"number": "INV-7"})
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call_.id, "content": "paid on 2026-11-30"})
        second = self.client.chat.completions.create(model="attive-default", messages=messages, tools=tools)
        self.assertEqual(second.choices[0].message.content, "INV-7 is paid.")

    def test_models(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(ids[0], "attive-default")
        self.assertIn(self.agent, ids)
        self.assertEqual(self.client.models.retrieve(self.agent).owned_by, "attive")

    def test_errors_raise_the_sdks_own_classes(self):
        bad = openai.OpenAI(base_url=f"{BASE}/v1", api_key="atv_" + "0" * 36, max_retries=0)
        with self.assertRaises(openai.AuthenticationError) as e:
            bad.chat.completions.create(model="attive-default", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(e.exception.status_code, 401)
        with self.assertRaises(openai.NotFoundError) as e:
            self.client.chat.completions.create(model="agent_nope", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(e.exception.code, "model_not_found")
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model="attive-default", messages=[{"role": "user", "content": "x"}], n=3)
        small = openai.OpenAI(base_url=f"{BASE}/v1", api_key=key(self.admin, rateLimitPerMinute=1), max_retries=0)
        small.chat.completions.create(model="attive-default", messages=[{"role": "user", "content": "first"}])
        with self.assertRaises(openai.RateLimitError) as e:
            small.chat.completions.create(model="attive-default", messages=[{"role": "user", "content": "second"}])
        self.assertEqual(e.exception.code, "rate_limit_exceeded")
        t = tag()
        script(t, [{"status": 500}])
        with self.assertRaises(openai.InternalServerError) as e:
            self.client.chat.completions.create(model="attive-default", messages=[{"role": "user", "content": t}])
        self.assertEqual(e.exception.status_code, 502)

    def test_the_readme_example_runs(self):
        with open(README, encoding="utf-8") as f:
            readme = f.read()
        block = re.search(r"```python\n(from openai import OpenAI.*?)```", readme, re.S)
        self.assertIsNotNone(block, "the README has the Python example")
        t = tag()
        script(t, [{"reply": f"Acme and Globex. {t}"}])
        code = block.group(1).replace("http://127.0.0.1:8787", BASE).replace("What are the top deals in our pipeline?", t)
        out = io.StringIO()
        env = {"ATTIVE_API_KEY": self.key}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "README.md", "exec"), {})
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.assertEqual(out.getvalue().strip(), f"Acme and Globex. {t}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
