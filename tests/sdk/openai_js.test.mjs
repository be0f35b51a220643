// The official `openai` npm package, unmodified, against /v1 (pinned in package.json).
// Run by tests/e2e.sh with node's test runner: ATTIVE_BASE_URL, ATTIVE_ADMIN_TOKEN and
// LLM_STUB_URL come from the harness. Each run makes its own workspace and keys.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import OpenAI from "openai";

const BASE = process.env.ATTIVE_BASE_URL;
const OPERATOR = process.env.ATTIVE_ADMIN_TOKEN;
const STUB = process.env.LLM_STUB_URL;
const ROOT = new URL("../../", import.meta.url);

async function call(method, url, token, body) {
  const resp = await fetch(url, {
    method,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  assert.ok(resp.ok, `${method} ${url}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const script = (tag, steps) => call("POST", `${STUB}/_stub/scenario`, null, { tag, steps });
const tag = () => `sdkjs-${randomUUID()}`;
const user = (content) => [{ role: "user", content }];

let admin, key, agent, client;
before(async () => {
  const ws = await call("POST", `${BASE}/api/admin/workspaces`, OPERATOR, { name: `sdk-js-${Date.now()}` });
  admin = (await call("POST", `${BASE}/api/admin/workspaces/${ws.id}/admins`, OPERATOR, { name: "Js", email: "js@example.com" })).token;
  key = (await call("POST", `${BASE}/api/settings/api-keys`, admin, { name: "sdk-js" })).key;
  agent = (await call("POST", `${BASE}/api/settings/agents`, admin, { name: "Analyst", instructions: "Be brief." })).id;
  // No automatic retries: each call is one request, so errors surface at once.
  client = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: key, maxRetries: 0 });
});

test("a plain completion", async () => {
  const t = tag();
  await script(t, [{ reply: "Three deals.", usage: { prompt_tokens: 12, completion_tokens: 3 } }]);
  const resp = await client.chat.completions.create({ model: agent, messages: user(`Top deals? ${t}`) });
  assert.equal(resp.choices[0].message.content, "Three deals.");
  assert.equal(resp.choices[0].finish_reason, "stop");
  assert.equal(resp.model, agent);
  assert.equal(resp.usage.total_tokens, 15);
  assert.match(resp.id, /^chatcmpl-/);
  assert.ok(resp.attive.requestId);
});

test("a streamed completion through the stream helper", async () => {
  const t = tag();
  await script(t, [{ chunks: ["Pipe", "line ", "is ", "fine."] }]);
  const stream = client.chat.completions.stream({ model: "attive-default", messages: user(`Pipeline? ${t}`) });
  const seen = [];
  stream.on("content", (delta) => seen.push(delta));
  for await (const _chunk of stream) {
    // the helper collects; iterating drives it
  }
  const final = await stream.finalChatCompletion();
  assert.equal(seen.join(""), "Pipeline is fine.");
  assert.ok(seen.length >= 2, "it arrived in pieces");
  assert.equal(final.choices[0].message.content, "Pipeline is fine.");
  assert.equal(final.choices[0].finish_reason, "stop");
});

test("a caller tool round trip", async () => {
  const t = tag();
  await script(t, [{ tool_calls: [{ name: "lookup_invoice", arguments: { number: "INV-7" } }] }, { reply: "INV-7 is paid." }]);
  const tools = [{ type: "function", function: { name: "lookup_invoice", parameters: { type: "object", properties: { number: { type: "string" } }, required: ["number"] } } }];
  const messages = user(`Is INV-7 paid? ${t}`);
  const first = await client.chat.completions.create({ model: "attive-default", messages, tools });
  assert.equal(first.choices[0].finish_reason, "tool_calls");
  const callOf = first.choices[0].message.tool_calls[0];
  assert.equal(callOf.function.name, "lookup_invoice");
  assert.deepEqual(JSON.parse(callOf.function.arguments), { number: "INV-7" });
  messages.push(first.choices[0].message, { role: "tool", tool_call_id: callOf.id, content: "paid on 2026-11-30" });
  const second = await client.chat.completions.create({ model: "attive-default", messages, tools });
  assert.equal(second.choices[0].message.content, "INV-7 is paid.");
});

test("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.equal(ids[0], "attive-default");
  assert.ok(ids.includes(agent));
  assert.equal((await client.models.retrieve(agent)).owned_by, "attive");
});

test("errors raise the SDK's own classes", async () => {
  const bad = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: "atv_" + "0".repeat(36), maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: "attive-default", messages: user("x") }), OpenAI.AuthenticationError);
  await assert.rejects(client.chat.completions.create({ model: "agent_nope", messages: user("x") }), (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found");
  await assert.rejects(client.chat.completions.create({ model: "attive-default", messages: user("x"), n: 3 }), OpenAI.BadRequestError);
  const smallKey = (await call("POST", `${BASE}/api/settings/api-keys`, admin, { name: "small", rateLimitPerMinute: 1 })).key;
  const small = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: smallKey, maxRetries: 0 });
  await small.chat.completions.create({ model: "attive-default", messages: user("first") });
  await assert.rejects(small.chat.completions.create({ model: "attive-default", messages: user("second") }), (e) => e instanceof OpenAI.RateLimitError && e.code === "rate_limit_exceeded");
  const t = tag();
  await script(t, [{ status: 500 }]);
  await assert.rejects(client.chat.completions.create({ model: "attive-default", messages: user(t) }), (e) => e instanceof OpenAI.InternalServerError && e.status === 502);
});

test("the README example runs", async () => {
  const readme = readFileSync(new URL("README.md", ROOT), "utf8");
  const block = /```js\n(import OpenAI from "openai";[^`]*?)```/.exec(readme);
  assert.ok(block, "the README has the JavaScript example");
  const t = tag();
  await script(t, [{ reply: `Acme and Globex. ${t}` }]);
  const code = block[1].replace("http://127.0.0.1:8787", BASE).replace("What are the top deals in our pipeline?", t);
  // Run from the project folder, so `openai` resolves to the pinned package.
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", code], {
    cwd: ROOT,
    env: { ...process.env, ATTIVE_API_KEY: key },
    encoding: "utf8",
  });
  assert.equal(out.trim(), `Acme and Globex. ${t}`);
});
