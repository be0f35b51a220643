// Unit tests of the embed snippets (assets/settings/js/snippets.js). Besides their text, each
// server snippet is run (when its tool is installed) against a local stand-in of the mint
// route, which checks the request it gets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import { promisify } from "node:util";
import { APP_ORIGIN, TOKEN_PATH, embedSnippets } from "../../assets/settings/js/snippets.js";

const run = promisify(execFile);
const ID = "ins_4fJ9kQ2mZp8Xw1Lc";
const KEY = "atv_" + "k".repeat(36);
// Ids are the API's, but the snippets do not rely on that: quotes and `$(…)` stay text.
const NASTY_ID = `ins_'$(echo expanded)"\\`;

test("the page's HTML loads the widget from this service and names the insight", () => {
  const { html } = embedSnippets("https://attive.example.com", ID);
  assert.equal(
    html,
    '<script src="https://attive.example.com/embed/v1.js" async></script>\n' +
      `<attive-insight insight="${ID}" token-url="/attive-token"></attive-insight>`,
  );
  // A trailing slash on the origin is not doubled; attribute values are escaped.
  assert.match(embedSnippets("http://127.0.0.1:8787/", ID).html, /src="http:\/\/127\.0\.0\.1:8787\/embed\/v1\.js"/);
  assert.match(embedSnippets("https://a.example", 'x"<y>&').html, /insight="x&quot;&lt;y&gt;&amp;"/);
});

test("three server flavours, each posting the insight and the page's origin with the API key", () => {
  const { server } = embedSnippets("https://attive.example.com", ID);
  assert.deepEqual(server.map((s) => s.id), ["curl", "python", "node"]);
  assert.deepEqual(server.map((s) => s.label), ["curl", "Python (standard library)", "JavaScript (Node 18+)"]);
  for (const s of server) {
    assert.ok(s.text.includes("https://attive.example.com/api/embed-tokens"), s.id);
    assert.ok(s.text.includes(ID), s.id);
    assert.ok(s.text.includes(APP_ORIGIN), s.id);
    assert.ok(s.text.includes("ATTIVE_API_KEY"), s.id);
    assert.ok(s.text.includes(TOKEN_PATH), `${s.id} says where the token goes`);
    assert.ok(!s.text.includes("atv_"), `${s.id} holds no key`);
  }
  const [curl, python, node] = server.map((s) => s.text);
  assert.match(curl, /-H "Authorization: Bearer \$ATTIVE_API_KEY"/);
  const body = /-d '([^']*)'/.exec(curl)[1];
  assert.deepEqual(JSON.parse(body), { origins: [APP_ORIGIN], insightIds: [ID] });
  // Python: the standard library only.
  const imports = python.split("\n").filter((l) => /^\s*(import|from)\s/.test(l));
  assert.deepEqual(imports, ["import json", "import os", "import urllib.request"]);
  // JavaScript: it parses, and needs nothing but the global fetch.
  assert.doesNotThrow(() => new Function(node));
  assert.ok(!/require\(|import /.test(node));
});

test("quotes in an id cannot break out of the shell or the string literals", () => {
  const { server } = embedSnippets("https://attive.example.com", NASTY_ID);
  const body = /-d ('(?:[^']|'\\'')*')$/m.exec(server[0].text)[1];
  assert.ok(body.includes(`'\\''`), "single quotes closed, escaped and reopened");
  assert.doesNotThrow(() => new Function(server[2].text));
});

// ---- the snippets, run ----

// A stand-in for POST /api/embed-tokens that records what it was sent.
async function mintStandIn() {
  const seen = [];
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, type: req.headers["content-type"], body: raw });
      res.writeHead(201, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ token: "atvet_stub.mac", expiresAt: "2026-03-30T12:15:00Z" }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, seen, close: () => new Promise((r) => server.close(r)) };
}

function checkRequest(seen, id = ID) {
  assert.equal(seen.length, 1);
  const [r] = seen;
  assert.equal(r.method, "POST");
  assert.equal(r.url, "/api/embed-tokens");
  assert.equal(r.auth, `Bearer ${KEY}`);
  assert.equal(r.type, "application/json");
  assert.deepEqual(JSON.parse(r.body), { origins: [APP_ORIGIN], insightIds: [id] });
}

async function available(command, args) {
  try {
    await run(command, args, { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const env = { ...process.env, ATTIVE_API_KEY: KEY };

test("the JavaScript snippet mints a token with fetch", async () => {
  const saved = process.env.ATTIVE_API_KEY;
  process.env.ATTIVE_API_KEY = KEY;
  try {
    for (const id of [ID, NASTY_ID]) {
      const stand = await mintStandIn();
      try {
        const text = embedSnippets(stand.origin, id).server.find((s) => s.id === "node").text;
        const minted = await new Function(`${text}\nreturn mintEmbedToken();`)();
        assert.equal(minted.token, "atvet_stub.mac");
        checkRequest(stand.seen, id);
      } finally {
        await stand.close();
      }
    }
  } finally {
    if (saved === undefined) delete process.env.ATTIVE_API_KEY;
    else process.env.ATTIVE_API_KEY = saved;
  }
});

test("the Python snippet mints a token with urllib.request", { skip: !(await available("python3", ["--version"])) && "python3 is not installed" }, async () => {
  for (const id of [ID, NASTY_ID]) {
    const stand = await mintStandIn();
    try {
      const text = embedSnippets(stand.origin, id).server.find((s) => s.id === "python").text;
      const { stdout } = await run("python3", ["-I", "-c", `${text}\nprint(json.dumps(mint_embed_token()))`], { env, timeout: 20_000 });
      assert.equal(JSON.parse(stdout).token, "atvet_stub.mac");
      checkRequest(stand.seen, id);
    } finally {
      await stand.close();
    }
  }
});

test("the curl snippet mints a token", { skip: !(await available("curl", ["--version"])) && "curl is not installed" }, async () => {
  // The shell takes an id with quotes and `$(…)` literally.
  for (const id of [ID, NASTY_ID]) {
    const stand = await mintStandIn();
    try {
      const text = embedSnippets(stand.origin, id).server.find((s) => s.id === "curl").text;
      const { stdout } = await run("sh", ["-c", text], { env, timeout: 20_000 });
      assert.equal(JSON.parse(stdout).token, "atvet_stub.mac");
      checkRequest(stand.seen, id);
    } finally {
      await stand.close();
    }
  }
});
