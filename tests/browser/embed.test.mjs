// Browser test of the embeddable widget (assets/embed/v1.js, served at /embed/v1.js) on a
// customer's page: a second local origin whose own backend mints embed tokens with an API key,
// exactly as the README tells customers to do. Debian's headless Chromium, driven by
// playwright-core; run by tests/e2e.sh against the same local stack as the API suite.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";

const BASE = process.env.ATTIVE_BASE_URL;
const OPERATOR = process.env.ATTIVE_ADMIN_TOKEN;
const STUB = process.env.LLM_STUB_URL;
const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;
const WIDGET = new URL("../../assets/embed/v1.js", import.meta.url);
mkdirSync(ARTIFACTS, { recursive: true });

async function call(method, path, token, body) {
  const resp = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: resp.status, body: resp.status === 204 ? null : await resp.json() };
}

// Requests whose body holds `tag` get these steps from the LLM stand-in, in order.
async function script(tag, steps) {
  const resp = await fetch(`${STUB}/_stub/scenario`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tag, steps }),
  });
  assert.equal(resp.status, 200);
}

const unique = (word) => `${word}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

// A workspace of its own with an admin, an API key and two records: one with a URL, one
// without, whose title is markup that must stay text.
const RECORDS = [
  { kind: "deal", externalId: "d1", title: "Acme renewal", url: "https://crm.example/d1", accountName: "Acme", body: "Acme renewal at risk: the champion left and pricing is under review." },
  { kind: "note", externalId: "n1", title: 'Acme call notes <img src=x onerror="window.__xss=1">', accountName: "Acme", body: "Call with Acme about the renewal and the pricing review." },
];

async function workspace({ rateLimitPerMinute } = {}) {
  const ws = await call("POST", "/api/admin/workspaces", OPERATOR, { name: `embed-${Date.now()}` });
  assert.equal(ws.status, 201);
  const admin = await call("POST", `/api/admin/workspaces/${ws.body.id}/admins`, OPERATOR, { name: "Ada Admin", email: "ada@example.com" });
  assert.equal(admin.status, 201);
  const token = admin.body.token;
  const key = await call("POST", "/api/settings/api-keys", token, { name: "Dashboard", ...(rateLimitPerMinute ? { rateLimitPerMinute } : {}) });
  assert.equal(key.status, 201);
  const records = await call("PUT", "/api/settings/knowledge/records", token, { records: RECORDS });
  assert.equal(records.status, 200, JSON.stringify(records.body));
  return { admin: token, key: key.body.key, keyId: key.body.id };
}

// An insight, generated now with a scripted answer (scripted first: creating it starts a
// generation). The prompt's words find both records.
async function insight(admin, answer) {
  const tag = unique("insighttag");
  await script(tag, [{ reply: answer }]);
  const created = await call("POST", "/api/settings/insights", admin, { name: "Acme renewal risk", prompt: `How at risk is the Acme renewal, given the pricing review? (${tag})`, agentId: null });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const refreshed = await call("POST", `/api/settings/insights/${created.body.id}/refresh`, admin);
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  assert.equal(refreshed.body.answer, answer);
  return refreshed.body;
}

// The two lines of the README's snippet, read from the README itself, as a customer pastes
// them: with the service's address and the insight's id in place of the placeholders.
const README_SNIPPET = (() => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const block = /```html\n([^`]*?embed\/v1\.js[^`]*?)```/.exec(readme);
  assert.ok(block, "the README has an html block with the widget's two lines");
  const lines = block[1].trim().split("\n");
  assert.equal(lines.length, 2, block[1]);
  return lines;
})();
const snippet = (insightId) =>
  README_SNIPPET.map((line) => line.replace("https://your-attive-instance.com", BASE).replace("ins_…", insightId));

// The customer's site: a second origin. Its backend mints tokens for its own origin with the
// API key (`site.key` can change, as when a key is rolled); `/attive-token-wrong` mints for
// another origin. Pages: `/` (the snippet and a chat), `/wrong` (the same elements with the
// wrong token), `/chat` (a chat whose token comes from `window.attive.getToken`), `/bare` (no
// token source at all).
async function customerSite({ key, insightId }) {
  const site = { key, mints: 0 };
  const page = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme dashboard</title><link rel="icon" href="data:,">
<style>body{font:16px/1.5 system-ui,sans-serif;margin:32px auto;max-width:760px;color:#222}
attive-insight,attive-chat{margin:0 0 24px}.themed{--attive-accent:#6f42c1;--attive-radius:12px}</style></head>
<body><h1>Customer dashboard</h1>
${body}
</body></html>`;
  const pages = {
    "/": () => page(`${insightId ? snippet(insightId).join("\n") : `<script src="${BASE}/embed/v1.js" async></script>`}
<attive-chat class="themed" token-url="/attive-token"></attive-chat>`),
    "/wrong": () => page(`<script src="${BASE}/embed/v1.js" async></script>
<attive-insight insight="${insightId}" token-url="/attive-token-wrong"></attive-insight>
<attive-chat token-url="/attive-token-wrong"></attive-chat>`),
    "/chat": () => page(`<script>window.attive = { getToken: () => fetch("/attive-token", { method: "POST" }).then((r) => r.json()) };</script>
<script src="${BASE}/embed/v1.js" async></script>
<attive-chat></attive-chat>`),
    "/bare": () => page(`<script src="${BASE}/embed/v1.js" async></script>
<attive-insight insight="${insightId}"></attive-insight>`),
  };
  const server = createServer(async (req, res) => {
    if (req.method === "GET" && pages[req.url]) {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      return res.end(pages[req.url]());
    }
    if (req.method === "POST" && (req.url === "/attive-token" || req.url === "/attive-token-wrong")) {
      site.mints++;
      const origins = req.url === "/attive-token" ? [site.origin] : ["https://elsewhere.example"];
      const resp = await fetch(`${BASE}/api/embed-tokens`, {
        method: "POST",
        headers: { Authorization: `Bearer ${site.key}`, "Content-Type": "application/json" },
        body: JSON.stringify({ origins, insightIds: insightId ? [insightId] : null, chat: true, user: "viewer-1" }),
      });
      res.writeHead(resp.status, { "Content-Type": "application/json" });
      return res.end(await resp.text());
    }
    res.writeHead(404).end();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  site.origin = `http://127.0.0.1:${server.address().port}`;
  site.close = () => new Promise((resolve) => server.close(resolve));
  return site;
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => browser && (await browser.close()));

async function open(url) {
  const context = await browser.newContext({ viewport: { width: 900, height: 800 } });
  const p = await context.newPage();
  const problems = [];
  p.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  p.on("pageerror", (e) => problems.push(String(e)));
  await p.goto(url);
  return { p, problems };
}

const attr = (p, selector, name) => p.locator(selector).getAttribute(name);
const waitState = (p, selector, state) =>
  p.waitForFunction(([s, want]) => document.querySelector(s)?.getAttribute("state") === want, [selector, state], { timeout: 20_000 });

test("the widget is small and served as the repository holds it", async () => {
  const source = readFileSync(WIDGET);
  const gzipped = gzipSync(source, { level: 9 }).length;
  assert.ok(gzipped <= 15 * 1024, `gzip size ${gzipped} bytes`);
  const resp = await fetch(`${BASE}/embed/v1.js`);
  assert.equal(resp.status, 200);
  assert.match(resp.headers.get("content-type"), /javascript/);
  assert.equal(await resp.text(), source.toString("utf8"));
});

test("an insight renders on another origin with its answer and numbered source links", async () => {
  const { admin, key } = await workspace();
  const found = await insight(admin, "Acme's renewal is **at risk** [S1]. The call notes say pricing is under review [S2].");
  assert.ok(found.sources.length >= 2, JSON.stringify(found.sources));
  const site = await customerSite({ key, insightId: found.id });
  const { p, problems } = await open(site.origin + "/");
  try {
    // The page holds exactly the README's two lines.
    const html = await (await fetch(site.origin + "/")).text();
    for (const line of snippet(found.id)) assert.ok(html.includes(line), line);

    await waitState(p, "attive-insight", "ready");
    const el = p.locator("attive-insight");
    assert.equal(await el.getAttribute("data-error"), null);
    await el.getByRole("heading", { name: "Acme renewal risk" }).waitFor();
    const answer = el.locator("[part=answer]");
    assert.match(await answer.innerText(), /Acme's renewal is at risk\s*\[1\]\. The call notes say pricing is under review\s*\[2\]\./);
    assert.equal(await answer.locator("strong").innerText(), "at risk");

    // Each [S#] is a superscript link: to the record's page, or to its entry in the list.
    const markers = answer.locator("sup a");
    assert.equal(await markers.count(), 2);
    const sources = el.locator("ol[part=sources] > li");
    for (const [i, source] of found.sources.slice(0, 2).entries()) {
      const marker = markers.nth(i);
      assert.equal(await marker.innerText(), `[${i + 1}]`);
      const item = sources.filter({ hasText: source.title });
      assert.equal(await item.getAttribute("value"), String(i + 1));
      if (source.url) {
        assert.equal(await marker.getAttribute("href"), source.url);
        const link = item.getByRole("link");
        assert.equal(await link.getAttribute("href"), source.url);
        assert.equal(await link.getAttribute("target"), "_blank");
        assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
      } else {
        assert.equal(await item.getByRole("link").count(), 0);
        await marker.click();
        assert.equal(await item.evaluate((li) => li.getRootNode().activeElement === li), true);
      }
    }
    // Markup in a record's title is text: nothing ran, no element was made of it.
    await sources.filter({ hasText: '<img src=x onerror="window.__xss=1">' }).waitFor();
    assert.equal(await el.locator("img").count(), 0);
    assert.equal(await p.evaluate(() => window.__xss), undefined);
    assert.match(await el.locator("[part=meta]").innerText(), /^Generated (\d+ minutes? ago|just now|now)$/);
    await p.screenshot({ path: `${ARTIFACTS}embed-insight.png`, fullPage: true });

    // Revalidation: the same ETag gets a 304, and the answer stays.
    const statuses = [];
    p.on("response", (r) => r.url().includes("/api/insights/") && r.request().method() === "GET" && statuses.push(r.status()));
    await p.evaluate(() => document.querySelector("attive-insight").refresh());
    assert.deepEqual(statuses, [304]);
    assert.equal(await el.getAttribute("state"), "ready");
    assert.match(await answer.innerText(), /at risk/);
    assert.equal(site.mints, 1, "one token for the whole page");
    assert.deepEqual(problems, []);
  } finally {
    await p.context().close();
    await site.close();
  }
});

test("the chat streams an answer and a follow-up continues the same chat", async () => {
  const { key } = await workspace();
  const tag = unique("chattag");
  // One scenario, two steps: the follow-up's request holds the tag too (in its history).
  await script(tag, [
    { chunks: ["Acme's renewal ", "is at risk ", "because the champion left [S1]."], chunk_delay_ms: 400 },
    { chunks: ["Send the pricing proposal ", "this week."], chunk_delay_ms: 200 },
  ]);
  const site = await customerSite({ key, insightId: null });
  const { p, problems } = await open(site.origin + "/");
  try {
    const chat = p.locator("attive-chat");
    assert.equal(await chat.getAttribute("state"), "ready");
    const input = chat.getByLabel("Ask a question");
    const send = chat.getByRole("button", { name: "Send" });

    // Shift+Enter is a new line, not a send.
    await input.click();
    await p.keyboard.type("first line");
    await p.keyboard.press("Shift+Enter");
    await p.keyboard.type("second line");
    assert.equal(await input.inputValue(), "first line\nsecond line");
    assert.equal(await chat.locator("[part~=message]").count(), 0);

    // Enter sends; the answer shows while it is written, Send waits for it.
    await input.fill(`How is the Acme renewal going? (${tag})`);
    await input.press("Enter");
    await waitState(p, "attive-chat", "streaming");
    assert.ok(await send.isDisabled());
    assert.equal(await input.inputValue(), "");
    await p.waitForFunction(() => {
      const el = document.querySelector("attive-chat");
      const text = el.shadowRoot.querySelector("[part~=assistant]")?.textContent || "";
      return el.getAttribute("state") === "streaming" && text.includes("Acme's renewal") && !text.includes("champion");
    });
    await waitState(p, "attive-chat", "ready");
    assert.ok(await send.isEnabled());
    const first = chat.locator("[part~=assistant]").first();
    assert.match(await first.innerText(), /Acme's renewal is at risk because the champion left\s*\[1\]\./);
    // Its sources come after `done`: the cited record, linked.
    const cited = first.locator("ol[part=sources] > li").first();
    assert.equal(await cited.getAttribute("value"), "1");
    const chatId = await chat.evaluate((el) => el.chatId);
    assert.match(chatId, /\S/);

    // The follow-up, with the button: the same chat, whose history the model is given.
    await input.fill("What should we do next?");
    await send.click();
    await waitState(p, "attive-chat", "ready");
    assert.match(await chat.locator("[part~=assistant]").nth(1).innerText(), /Send the pricing proposal this week\./);
    assert.equal(await chat.evaluate((el) => el.chatId), chatId);
    assert.equal(await chat.locator("[part~=user]").count(), 2);
    const seen = await (await fetch(`${STUB}/_stub/requests?tag=${tag}`)).json();
    assert.equal(seen.length, 2);
    const followUp = JSON.stringify(seen[1].body);
    assert.ok(followUp.includes("What should we do next?"));
    assert.ok(followUp.includes("because the champion left"), "the first answer is in the follow-up's history");

    // Themed by the page through custom properties.
    assert.equal(await send.evaluate((b) => getComputedStyle(b).backgroundColor), "rgb(111, 66, 193)");
    assert.equal(await chat.getAttribute("data-error"), null);
    await p.screenshot({ path: `${ARTIFACTS}embed-chat.png`, fullPage: true });
    assert.equal(site.mints, 1);
    assert.deepEqual(problems, []);
  } finally {
    await p.context().close();
    await site.close();
  }
});

test("a token bound to another origin is refused, and the widget says so in words", async () => {
  const { admin, key } = await workspace();
  const found = await insight(admin, "Acme is at risk [S1].");
  const site = await customerSite({ key, insightId: found.id });
  const { p, problems } = await open(site.origin + "/wrong");
  try {
    await waitState(p, "attive-insight", "error");
    assert.equal(await attr(p, "attive-insight", "data-error"), "origin");
    const insightEl = p.locator("attive-insight");
    await insightEl.getByText("This page's address is not allowed to use this service").waitFor();
    assert.equal(await insightEl.locator("[part=answer]").count(), 0);

    const chat = p.locator("attive-chat");
    await chat.getByLabel("Ask a question").fill("Anyone there?");
    await chat.getByRole("button", { name: "Send" }).click();
    await waitState(p, "attive-chat", "error");
    assert.equal(await chat.getAttribute("data-error"), "origin");
    await chat.getByText("This page's address is not allowed to use this service").waitFor();
    // The question is given back to send again; no empty answer stays behind.
    assert.equal(await chat.getByLabel("Ask a question").inputValue(), "Anyone there?");
    assert.equal(await chat.locator("[part~=assistant]").count(), 0);
    await p.screenshot({ path: `${ARTIFACTS}embed-origin-refused.png`, fullPage: true });
    // The refusal carries no CORS header: Chromium's own report of it is the only console error.
    assert.ok(problems.length > 0);
    assert.deepEqual(problems.filter((m) => !/blocked by CORS policy|net::ERR_FAILED/.test(m)), []);
  } finally {
    await p.context().close();
    await site.close();
  }
});

test("a refused token is replaced once: the page's backend mints another and the read goes on", async () => {
  const { admin, key, keyId } = await workspace();
  const found = await insight(admin, "Acme is at risk [S1].");
  const second = await call("POST", "/api/settings/api-keys", admin, { name: "Dashboard (new)" });
  assert.equal(second.status, 201);
  const site = await customerSite({ key, insightId: found.id });
  const { p, problems } = await open(site.origin + "/");
  try {
    await waitState(p, "attive-insight", "ready");
    assert.equal(site.mints, 1);
    // The key behind the page's token goes; the backend mints with the new key from now on.
    assert.equal((await call("DELETE", `/api/settings/api-keys/${keyId}`, admin)).status, 204);
    site.key = second.body.key;
    await p.evaluate(() => document.querySelector("attive-insight").refresh());
    assert.equal(site.mints, 2);
    assert.equal(await attr(p, "attive-insight", "state"), "ready");
    assert.equal(await attr(p, "attive-insight", "data-error"), null);
    assert.match(await p.locator("attive-insight [part=answer]").innerText(), /Acme is at risk/);
    // The 401 that asked for it is the one console error (Chromium reports every 4xx).
    assert.deepEqual(problems.filter((m) => !m.includes("status of 401")), []);
  } finally {
    await p.context().close();
    await site.close();
  }
});

test("a rate-limited chat says when to try again, with a token from window.attive.getToken", async () => {
  const { key } = await workspace({ rateLimitPerMinute: 3 });
  const site = await customerSite({ key, insightId: null });
  const { p, problems } = await open(site.origin + "/chat");
  try {
    const chat = p.locator("attive-chat");
    // Minting counts for the key too: the limit is reached within a few messages.
    for (let i = 0; i < 5 && (await chat.getAttribute("data-error")) !== "rate_limited"; i++) {
      await chat.getByLabel("Ask a question").fill(`Message number ${i + 1}`);
      await chat.getByRole("button", { name: "Send" }).click();
      await p.waitForFunction(() => ["ready", "error"].includes(document.querySelector("attive-chat").getAttribute("state")) && !document.querySelector("attive-chat").shadowRoot.querySelector("button").disabled);
    }
    assert.equal(await chat.getAttribute("data-error"), "rate_limited");
    assert.match(await chat.locator("[part=status]").innerText(), /^Too many requests\. Try again in \d+ s\.$/);
    await chat.getByText("Stub reply to: Message number 1").waitFor();
    await p.screenshot({ path: `${ARTIFACTS}embed-rate-limited.png`, fullPage: true });
    assert.equal(site.mints, 1);
    assert.deepEqual(problems.filter((m) => !m.includes("status of 429")), []);
  } finally {
    await p.context().close();
    await site.close();
  }
});

test("a widget without a token source says what it is missing", async () => {
  const site = await customerSite({ key: "unused", insightId: "ins_unused" });
  const { p, problems } = await open(site.origin + "/bare");
  try {
    await waitState(p, "attive-insight", "error");
    assert.equal(await attr(p, "attive-insight", "data-error"), "config");
    await p.locator("attive-insight").getByText("it needs a token-url attribute or window.attive.getToken").waitFor();
    assert.equal(site.mints, 0);
    assert.deepEqual(problems, []);
  } finally {
    await p.context().close();
    await site.close();
  }
});
