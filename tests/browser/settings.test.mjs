// Browser test of the settings page, in Debian's headless Chromium driven by playwright-core.
// Run by tests/e2e.sh against the same local stack as the API suite, with node's test runner.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.ATTIVE_BASE_URL;
const OPERATOR = process.env.ATTIVE_ADMIN_TOKEN;
const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;
mkdirSync(ARTIFACTS, { recursive: true });

async function call(method, path, token, body) {
  const resp = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: resp.status, body: resp.status === 204 ? null : await resp.json() };
}

async function freshAdmin() {
  const ws = await call("POST", "/api/admin/workspaces", OPERATOR, { name: `browser-${Date.now()}` });
  const admin = await call("POST", `/api/admin/workspaces/${ws.body.id}/admins`, OPERATOR, { name: "Grace Admin", email: "grace@example.com" });
  assert.equal(admin.status, 201);
  return admin.body.token;
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => browser && (await browser.close()));

async function page() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const p = await context.newPage();
  const problems = [];
  p.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  p.on("pageerror", (e) => problems.push(String(e)));
  return { p, problems };
}

async function signIn(p, token) {
  await p.goto(`${BASE}/settings`);
  await p.getByLabel("Workspace admin token").fill(token);
  await p.getByRole("button", { name: "Sign in" }).click();
}

test("the page is served with strict security headers", async () => {
  const resp = await fetch(`${BASE}/settings`);
  assert.equal(resp.status, 200);
  assert.match(resp.headers.get("content-type"), /text\/html/);
  const csp = resp.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.equal(resp.headers.get("x-content-type-options"), "nosniff");
  assert.equal(resp.headers.get("referrer-policy"), "no-referrer");
  const html = await resp.text();
  assert.doesNotMatch(html, /<script>[^<]/, "no inline script");
  assert.doesNotMatch(html, /https?:\/\//, "nothing loaded from elsewhere");
});

test("a wrong token shows an error", async () => {
  const { p, problems } = await page();
  await signIn(p, "atvadm_notARealTokenAtAll000000000000000000");
  await p.getByText("That admin token was not accepted").waitFor();
  assert.equal(await p.evaluate(() => sessionStorage.getItem("attive.adminToken")), null);
  assert.ok(await p.locator("#app").isHidden());
  assert.deepEqual(problems.filter((m) => !m.includes("401")), []);
  await p.context().close();
});

test("an admin creates, copies, uses and deletes a key, and manages agents", async () => {
  const token = await freshAdmin();
  const { p, problems } = await page();
  await signIn(p, token);
  await p.getByRole("heading", { name: "Create an API key" }).waitFor();

  // Create: the key is revealed once, with a working copy button.
  await p.getByLabel("Key name").fill("Browser Integration");
  await p.getByLabel("Requests per minute (optional)").fill("30");
  await p.getByRole("button", { name: "Create Key" }).click();
  const dialog = p.getByRole("dialog", { name: "Your new API key" });
  await dialog.waitFor();
  await dialog.getByText("won't be able to see it again").waitFor();
  const key = await p.getByLabel("API key", { exact: true }).inputValue();
  assert.match(key, /^atv2_[0-9A-Za-z]{59}$/);
  await p.getByRole("button", { name: "Copy" }).click();
  await p.getByText("Copied to the clipboard.").waitFor();
  assert.equal(await p.evaluate(() => navigator.clipboard.readText()), key);
  await p.screenshot({ path: `${ARTIFACTS}settings-reveal-dialog.png` });
  // The revealed key is in neither storage nor the URL.
  const stored = await p.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }) + location.href);
  assert.ok(!stored.includes(key));
  await p.getByRole("button", { name: "I have saved it" }).click();

  // The table shows the prefix only, also after a reload.
  const row = p.getByRole("row", { name: /Browser Integration/ });
  await row.waitFor();
  await p.reload();
  await row.waitFor();
  const rowText = await row.innerText();
  assert.ok(rowText.includes(key.slice(0, 12)), rowText);
  assert.ok(!rowText.includes(key.slice(12)), "only the prefix is shown");
  assert.match(rowText, /Grace Admin/);
  assert.match(rowText, /Never/);
  assert.match(rowText, /30\/min/);
  assert.ok(!(await p.content()).includes(key));
  await p.screenshot({ path: `${ARTIFACTS}settings-keys-table.png`, fullPage: true });

  // The key works against the API.
  const used = await call("POST", "/api/chat", key, { message: "Hello from the browser test" });
  assert.equal(used.status, 200);

  // Delete it with the trash button and confirm; the key stops working.
  p.once("dialog", (d) => d.accept());
  await p.getByRole("button", { name: "Delete key Browser Integration" }).click();
  await row.waitFor({ state: "detached" });
  await p.getByText("No API keys yet.").waitFor();
  const revoked = await call("POST", "/api/chat", key, { message: "Still there?" });
  assert.equal(revoked.status, 401);

  // Agents: create, edit, delete.
  await p.getByRole("tab", { name: "Agents" }).click();
  await p.getByLabel("Name", { exact: true }).fill("Renewal Risk");
  await p.getByLabel("Instructions").fill("Assess renewal risk for enterprise accounts.");
  await p.getByRole("button", { name: "Create agent" }).click();
  const agentRow = p.getByRole("row", { name: /Renewal Risk/ });
  await agentRow.waitFor();
  await p.getByRole("button", { name: "Edit agent Renewal Risk" }).click();
  await p.getByLabel("Name", { exact: true }).fill("Renewal Risk v2");
  await p.getByLabel("Model (optional)").fill("gpt-4o");
  // This Worker has only the `default` provider: a fallback on it is kept (an unknown one
  // would be refused, see the provider tests).
  await p.getByLabel("Fallbacks (optional)").fill("default/gpt-4o-mini");
  await p.getByRole("button", { name: "Save changes" }).click();
  const edited = p.getByRole("row", { name: /Renewal Risk v2/ });
  await edited.waitFor();
  assert.match(await edited.innerText(), /gpt-4o/);
  const savedAgent = (await call("GET", "/api/settings/agents", token)).body.agents[0];
  assert.deepEqual([savedAgent.provider, savedAgent.fallbacks], ["default", [{ provider: "default", model: "gpt-4o-mini" }]]);
  p.once("dialog", (d) => d.accept());
  await p.getByRole("button", { name: "Delete agent Renewal Risk v2" }).click();
  await p.getByText("No agents yet.").waitFor();

  // The audit log tells the story.
  await p.getByRole("tab", { name: "Audit log" }).click();
  await p.getByRole("cell", { name: "Deleted an agent" }).waitFor();
  for (const what of ["Created an API key", "Deleted an API key", "Created an agent", "Edited an agent"]) {
    await p.getByRole("cell", { name: what }).first().waitFor();
  }
  // The deleted key is still named, with its prefix, and the deleted agent by its last name.
  const deletedKey = p.getByRole("row", { name: /Deleted an API key/ });
  assert.match(await deletedKey.innerText(), /Browser Integration\s+atv2_\w+…/);
  assert.match(await p.getByRole("row", { name: /Deleted an agent/ }).innerText(), /Renewal Risk v2/);

  // Sign out clears the token.
  await p.getByRole("button", { name: "Sign out" }).click();
  assert.equal(await p.evaluate(() => sessionStorage.getItem("attive.adminToken")), null);
  assert.deepEqual(problems, []);
  await p.context().close();
});

// ---- workspace knowledge -------------------------------------------------------------------

// A cell as a spreadsheet writes it: quoted when it holds a quote, a comma or a line break.
const csvCell = (v) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

// A CSV export of 1,000 valid records plus two invalid rows, with what the test expects of it.
// CRLF line ends and a byte order mark, as Excel writes them; some cells need quoting; header
// names in several spellings and one column the import ignores.
function knowledgeCsv(word) {
  const header = ["Kind", "External ID", "title", "Body", "URL", "account_name", "Amount", "currency", "status", "close_date", "properties.region", "Internal notes"];
  const kinds = ["deal", "account", "contact", "note", "feedback"];
  const rows = [];
  for (let i = 0; i < 1000; i++) {
    const kind = kinds[i % kinds.length];
    const deal = kind === "deal";
    rows.push([kind, `${kind}-${i}`, `Record ${i} of the import`, `Plain body number ${i}.`, "", `Account ${i % 37}`,
      deal ? String(1000 + i) : "", deal ? "USD" : "", deal ? "open" : "", deal ? "2026-09-30" : "", "EMEA", "not imported"]);
  }
  // Quotes, commas and line breaks (one CRLF, one LF) inside cells, and a thousands separator.
  const quoted = {
    title: 'Acme, Inc. — "Gold" renewal',
    body: 'First line, with a comma\r\nSecond "quoted" line\nThird line',
  };
  rows[5] = ["deal", "deal-quoted", quoted.title, quoted.body, "", "Acme, Inc.", "1,234,567.89", "USD", "open", "2026-12-31", "North America", ""];
  // The one record holding `word`; the only document, so the kind filter finds it alone.
  const unique = { title: "Security questionnaire, signed", url: "https://example.com/docs/security-questionnaire" };
  rows[640] = ["document", "doc-unique", unique.title, `Legal accepted the ${word} clause after review.`, unique.url, "Globex", "", "", "", "", "", ""];
  // Invalid, and caught by the page: no title.
  rows.splice(300, 0, ["note", "note-without-title", "", "A note whose title was lost.", "", "", "", "", "", "", "", ""]);
  // Invalid, and caught only by the API (the page does not check dates). Last, so its batch of
  // 500 holds it alone: a rejected batch writes nothing, and the valid rows all land.
  rows.push(["deal", "deal-bad-date", "Deal with an impossible close date", "", "", "", "10", "USD", "open", "2026-02-30", "", ""]);

  const lines = [header.map(csvCell).join(",")];
  const lineOf = new Map(); // externalId -> the file line the row starts on
  let line = 2;
  for (const [index, row] of rows.entries()) {
    const text = row.map(csvCell).join(",");
    lineOf.set(row[1], line);
    lines.push(text);
    line += 1 + (text.match(/\r\n|\r|\n/g) || []).length;
    // A blank line in the middle, which is not a row.
    if (index === 100) {
      lines.push("");
      line += 1;
    }
  }
  return { text: "\uFEFF" + lines.join("\r\n") + "\r\n", rows: rows.length, valid: 1000, lineOf, quoted, unique };
}

// Every record of the workspace through the list route, page by page.
async function allRecords(token) {
  const records = [];
  let cursor = "";
  do {
    const page = await call("GET", `/api/settings/knowledge/records?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, token);
    assert.equal(page.status, 200);
    records.push(...page.body.records);
    cursor = page.body.nextCursor;
  } while (cursor);
  return records;
}

const statTotal = (p) => p.locator("#stat-total").innerText().then((t) => Number(t.replace(/\D/g, "")));

test("an admin imports a CSV of 1,000 records, finds one by search, deletes it, and sets an agent's knowledge", async () => {
  const token = await freshAdmin();
  const word = "quokkaxylophone";
  const csv = knowledgeCsv(word);
  const dir = mkdtempSync(join(tmpdir(), "attive-csv-"));
  const file = join(dir, "records.csv");
  writeFileSync(file, csv.text);
  const { p, problems } = await page();
  try {
    await signIn(p, token);
    await p.getByRole("heading", { name: "Create an API key" }).waitFor();

    // The tab is reachable from the keyboard, like the others.
    await p.getByRole("tab", { name: "Agents" }).click();
    await p.keyboard.press("ArrowRight");
    const tab = p.getByRole("tab", { name: "Knowledge" });
    assert.equal(await tab.getAttribute("aria-selected"), "true");
    assert.equal(await p.evaluate(() => document.activeElement.id), "tab-knowledge");
    await p.getByText("No records yet.").first().waitFor();
    assert.equal(await statTotal(p), 0);

    // Import: progress to the end, a summary, and the two invalid rows by their lines.
    await p.getByLabel("CSV file").setInputFiles(file);
    await p.getByRole("button", { name: "Import" }).click();
    const summary = p.locator("#import-summary");
    await summary.waitFor({ state: "visible", timeout: 120_000 });
    const summaryText = await summary.innerText();
    assert.match(summaryText, /^Import finished\. 1,?000 created, 0 updated, 0 unchanged, 2 not imported\.$/, summaryText);
    assert.match(await p.locator("#import-count").innerText(), /^1,?002 of 1,?002 rows processed$/);
    assert.equal(await p.locator("#import-progress").evaluate((el) => el.value === el.max), true);
    const errors = await p.locator("#import-errors li").allInnerTexts();
    assert.equal(errors.length, 2, errors.join("\n"));
    assert.equal(errors[0], `line ${csv.lineOf.get("note-without-title")}: title is missing`);
    assert.match(errors[1], new RegExp(`^line ${csv.lineOf.get("deal-bad-date")}: closeDate must be`));

    // Every valid row landed, once, with its cells intact.
    await p.waitForFunction((n) => document.getElementById("stat-total").textContent.replace(/\D/g, "") === String(n), csv.valid);
    assert.equal(await p.locator("#stat-document").innerText(), "1");
    const stats = await call("GET", "/api/settings/knowledge/stats", token);
    assert.equal(stats.status, 200);
    assert.equal(stats.body.total, csv.valid);
    assert.equal(stats.body.kinds.document, 1);
    assert.ok(stats.body.lastUpdatedAt);
    const records = await allRecords(token);
    assert.equal(records.length, csv.valid);
    assert.equal(new Set(records.map((r) => `${r.kind}/${r.externalId}`)).size, csv.valid);
    const quoted = records.find((r) => r.externalId === "deal-quoted");
    assert.equal(quoted.title, csv.quoted.title);
    assert.equal(quoted.body, "First line, with a comma\nSecond \"quoted\" line\nThird line");
    assert.equal(quoted.accountName, "Acme, Inc.");
    assert.equal(quoted.amount, 1234567.89);
    assert.equal(quoted.closeDate, "2026-12-31");
    assert.deepEqual(quoted.properties, { region: "North America" });
    const plain = records.find((r) => r.externalId === "account-1");
    assert.equal(plain.amount ?? null, null, "an empty cell is absent");
    assert.ok(!records.some((r) => r.externalId === "note-without-title" || r.externalId === "deal-bad-date"));

    // The list pages through the records.
    const listRows = p.locator("#records-table tbody tr");
    await p.waitForFunction(() => document.querySelectorAll("#records-table tbody tr").length === 50);
    await p.getByRole("button", { name: "Load more" }).click();
    await p.waitForFunction(() => document.querySelectorAll("#records-table tbody tr").length === 100);

    // Search shows what an agent would see: the one record holding the word.
    await p.getByLabel("Question or words").fill(word);
    await p.getByRole("button", { name: "Search", exact: true }).click();
    await p.getByText("An agent would be given this record, in this order.").waitFor();
    const results = p.locator("#search-results > li");
    assert.equal(await results.count(), 1);
    const result = await results.innerText();
    assert.match(result, /Security questionnaire, signed/);
    assert.match(result, /document/);
    assert.match(result, /doc-unique/);
    assert.match(result, new RegExp(word));
    assert.equal(await results.getByRole("link", { name: csv.unique.title }).getAttribute("href"), csv.unique.url);
    // The stats, the search and the import's report; the long list below is left out.
    const bottom = await p.locator("#import-run").evaluate((el) => el.getBoundingClientRect().bottom + window.scrollY + 24);
    await p.screenshot({ path: `${ARTIFACTS}settings-knowledge.png`, fullPage: true, clip: { x: 0, y: 0, width: 1280, height: bottom } });

    // Delete it from the list, filtered to its kind; it leaves the list, the counts and search.
    await p.getByLabel("Show", { exact: true }).selectOption("document");
    await p.waitForFunction(() => document.querySelectorAll("#records-table tbody tr").length === 1);
    const row = p.getByRole("row", { name: /Security questionnaire, signed/ });
    assert.equal(await listRows.count(), 1);
    p.once("dialog", (d) => d.accept());
    await p.locator("#records-table").getByRole("button", { name: `Delete record ${csv.unique.title}` }).click();
    await row.waitFor({ state: "detached" });
    await p.getByText("No records of this kind.").waitFor();
    await p.getByText("No records match: an agent would answer without workspace data.").waitFor();
    await p.waitForFunction((n) => document.getElementById("stat-total").textContent.replace(/\D/g, "") === String(n), csv.valid - 1);
    const gone = await call("GET", `/api/settings/knowledge/search?q=${word}`, token);
    assert.equal(gone.status, 200);
    assert.deepEqual(gone.body.results, []);

    // An agent's knowledge: some kinds, then off; the table says which, the API stores it.
    await p.getByRole("tab", { name: "Agents" }).click();
    await p.getByLabel("Name", { exact: true }).fill("Pipeline Analyst");
    await p.getByLabel("Instructions").fill("Answer questions about the pipeline.");
    assert.ok(await p.getByRole("checkbox", { name: "Use workspace knowledge" }).isChecked(), "on by default");
    for (const kind of ["Contacts", "Notes", "Feedback", "Documents"]) await p.getByRole("checkbox", { name: kind }).uncheck();
    await p.getByRole("button", { name: "Create agent" }).click();
    const agentRow = p.getByRole("row", { name: /Pipeline Analyst/ });
    await agentRow.waitFor();
    assert.match(await agentRow.innerText(), /deal, account/);
    let agents = await call("GET", "/api/settings/agents", token);
    assert.deepEqual(agents.body.agents[0].knowledge, { enabled: true, kinds: ["deal", "account"] });

    await p.getByRole("button", { name: "Edit agent Pipeline Analyst" }).click();
    assert.ok(await p.getByRole("checkbox", { name: "Deals" }).isChecked());
    assert.ok(!(await p.getByRole("checkbox", { name: "Notes" }).isChecked()));
    await p.getByRole("checkbox", { name: "Use workspace knowledge" }).uncheck();
    assert.ok(await p.getByRole("checkbox", { name: "Deals" }).isDisabled(), "kinds do not apply while knowledge is off");
    await p.getByRole("button", { name: "Save changes" }).click();
    await p.getByRole("cell", { name: "Off", exact: true }).waitFor();
    agents = await call("GET", "/api/settings/agents", token);
    assert.equal(agents.body.agents[0].knowledge.enabled, false);

    // And back to every kind: all checked is "all kinds" (null), not a list of today's six.
    await p.getByRole("button", { name: "Edit agent Pipeline Analyst" }).click();
    await p.getByRole("checkbox", { name: "Use workspace knowledge" }).check();
    for (const kind of ["Contacts", "Notes", "Feedback", "Documents"]) await p.getByRole("checkbox", { name: kind }).check();
    await p.getByRole("button", { name: "Save changes" }).click();
    await p.getByRole("cell", { name: "All", exact: true }).waitFor();
    agents = await call("GET", "/api/settings/agents", token);
    assert.equal(agents.body.agents[0].knowledge.enabled, true);
    assert.equal(agents.body.agents[0].knowledge.kinds ?? null, null);

    // The API's refusal of the invalid batch is the only error the console saw.
    assert.deepEqual(problems.filter((m) => !m.includes("status of 400")), []);
  } finally {
    await p.context().close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- API keys: usage, rolling, agent scope -------------------------------------------------

const chat = (key, body) => call("POST", "/api/chat", key, body);
const digits = (text) => Number(text.replace(/\D/g, ""));
const escapeRe = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// Every chat whose message holds `tag` is answered by the LLM stand-in with this usage.
async function scriptUsage(tag, usage) {
  const resp = await fetch(`${process.env.LLM_STUB_URL}/_stub/scenario`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tag, steps: [{ usage }] }),
  });
  assert.equal(resp.status, 200);
}

// The row of a key in the keys table, found by its delete button: a rolled key and its
// successor share a name, and each row names the other's prefix.
const keyRow = (p, name, prefix) =>
  p.locator("#keys-table tbody tr", { has: p.getByRole("button", { name: `Delete key ${name} (${prefix}…)` }) });

test("an admin sees requests and tokens per day and per key on the Usage tab", async () => {
  const token = await freshAdmin();
  const used = await call("POST", "/api/settings/api-keys", token, { name: "Usage Reporter" });
  assert.equal(used.status, 201);
  const idle = await call("POST", "/api/settings/api-keys", token, { name: "Idle Key" });
  assert.equal(idle.status, 201);

  // N answered chats with known token counts, and one refused request, which counts too.
  const tag = `usage-${Date.now()}`;
  await scriptUsage(tag, { prompt_tokens: 120, completion_tokens: 30 });
  const N = 3;
  for (let i = 0; i < N; i++) {
    const r = await chat(used.body.key, { message: `Question ${i} ${tag}` });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  const refused = await chat(used.body.key, { message: "" });
  assert.equal(refused.status, 400);
  const expected = { requests: N + 1, errors: 1, rateLimited: 0, promptTokens: N * 120, completionTokens: N * 30 };

  // The route first: the default range is the last 30 UTC days, ending today.
  const today = new Date().toISOString().slice(0, 10);
  const usage = await call("GET", "/api/settings/usage", token);
  assert.equal(usage.status, 200, JSON.stringify(usage.body));
  assert.equal(usage.body.to, today);
  assert.equal(usage.body.days.length, 30);
  assert.equal(usage.body.days.at(-1).date, today);
  const mine = usage.body.keys.find((k) => k.keyId === used.body.id);
  for (const [field, value] of Object.entries(expected)) assert.equal(mine[field], value, field);
  for (const [field, value] of Object.entries(expected)) assert.equal(usage.body.totals[field], value, `totals.${field}`);
  const idleUsage = usage.body.keys.find((k) => k.keyId === idle.body.id);
  assert.equal(idleUsage.requests, 0);
  assert.equal(idleUsage.deleted, false);

  const { p, problems } = await page();
  try {
    await signIn(p, token);
    // The keys table counts the requests of the last 30 days.
    const row = keyRow(p, "Usage Reporter", used.body.prefix);
    await row.waitFor();
    assert.equal(digits(await row.locator("td.num").innerText()), N + 1);
    assert.equal(digits(await keyRow(p, "Idle Key", idle.body.prefix).locator("td.num").innerText()), 0);

    await p.getByRole("tab", { name: "Usage" }).click();
    assert.equal(await p.getByLabel("Period").inputValue(), "30");
    assert.equal(await p.getByLabel("To", { exact: true }).inputValue(), today);
    const table = p.locator("#usage-table");
    const usedRow = table.getByRole("row", { name: /Usage Reporter/ });
    await usedRow.waitFor();
    // Key, prefix, requests, errors, rate limited, prompt tokens, completion tokens, LLM time.
    const cells = await usedRow.locator("td").allInnerTexts();
    assert.equal(cells[1], `${used.body.prefix}…`);
    assert.deepEqual(cells.slice(2, 7).map(digits), Object.values(expected), cells.join(" | "));
    const idleCells = await table.getByRole("row", { name: /Idle Key/ }).locator("td").allInnerTexts();
    assert.deepEqual(idleCells.slice(2, 7).map(digits), [0, 0, 0, 0, 0]);
    const totals = await table.locator("tfoot td").allInnerTexts();
    assert.deepEqual(totals.slice(0, 5).map(digits), Object.values(expected));
    assert.equal(await table.locator("tfoot th").innerText(), "Total");

    // The chart: a place for every day of the range, today's bar and tokens as sent, the
    // other days at zero, and the same numbers in words.
    const chart = p.locator("#usage-chart");
    assert.equal(await chart.getAttribute("role"), "img");
    const days = chart.locator("g.day");
    assert.equal(await days.count(), 30);
    const last = days.last();
    assert.equal(await last.getAttribute("data-date"), today);
    assert.equal(Number(await last.getAttribute("data-requests")), N + 1);
    assert.equal(Number(await last.getAttribute("data-tokens")), N * 150);
    const heights = await chart.locator("g.day rect").evaluateAll((rects) => rects.map((r) => Number(r.getAttribute("height"))));
    assert.equal(heights.length, 30 * 3);
    assert.ok(heights.slice(0, 29 * 3).every((h) => h === 0), "empty days are bars of height 0");
    assert.ok(heights.slice(29 * 3).some((h) => h > 0));
    assert.equal(await chart.locator("polyline.tokens-line").getAttribute("points").then((pts) => pts.split(" ").length), 30);
    const desc = await chart.locator("desc").textContent();
    assert.match(desc, new RegExp(`^${N + 1} requests \\(1 error, 0 rate limited\\) and ${N * 150} tokens`));
    await p.locator("#panel-usage .card").screenshot({ path: `${ARTIFACTS}settings-usage.png` });

    // One key: the filter offers every key, and the table and chart show that one alone.
    await p.getByLabel("Keys", { exact: true }).selectOption(idle.body.id);
    await table.getByRole("row", { name: /Usage Reporter/ }).waitFor({ state: "detached" });
    assert.equal(await table.locator("tbody tr").count(), 1);
    await p.waitForFunction(() => document.querySelector("#usage-chart desc").textContent.startsWith("0 requests"));
    assert.match(await chart.locator("title").first().textContent(), /Idle Key/);
    assert.deepEqual((await table.locator("tfoot td").allInnerTexts()).slice(0, 5).map(digits), [0, 0, 0, 0, 0]);
    await p.getByLabel("Keys", { exact: true }).selectOption("");
    await usedRow.waitFor();

    // A year stays readable: thin bars for 366 days, labels at month starts only.
    await p.getByLabel("Period").selectOption("366");
    await p.waitForFunction(() => document.querySelectorAll("#usage-chart g.day").length === 366);
    const dayLabels = await chart.locator("text.day-label").allTextContents();
    assert.ok(dayLabels.length >= 12 && dayLabels.length <= 13, dayLabels.join(", "));
    assert.equal(Number(await days.last().getAttribute("data-requests")), N + 1);
    await p.locator("#panel-usage .card").screenshot({ path: `${ARTIFACTS}settings-usage-year.png` });

    // Custom dates: a range the wrong way round is refused on the page, a right one is shown.
    await p.getByLabel("From", { exact: true }).fill("2026-03-10");
    await p.getByLabel("To", { exact: true }).fill("2026-03-01");
    await p.getByText("The first day must not be after the last day.").waitFor();
    assert.equal(await p.getByLabel("Period").inputValue(), "custom");
    await p.getByLabel("From", { exact: true }).fill("2026-02-24");
    await p.waitForFunction(() => document.querySelectorAll("#usage-chart g.day").length === 6);
    assert.ok(await p.locator("#usage-error").isHidden());
    assert.deepEqual(problems, []);
  } finally {
    await p.context().close();
  }
});

test("an admin rolls a key with a grace period and limits a key to one agent", async () => {
  const token = await freshAdmin();
  const created = await call("POST", "/api/settings/api-keys", token, { name: "Rolling Integration", rateLimitPerMinute: 40 });
  assert.equal(created.status, 201);
  const oldKey = created.body.key;
  const oldPrefix = created.body.prefix;
  const { p, problems } = await page();
  try {
    await signIn(p, token);

    // Roll it with the default grace period of 24 hours; the new key is shown once.
    await p.getByRole("button", { name: `Roll key Rolling Integration (${oldPrefix}…)` }).click();
    const roll = p.getByRole("dialog", { name: "Roll key Rolling Integration" });
    await roll.waitFor();
    const day = roll.getByRole("radio", { name: "24 hours" });
    assert.ok(await day.isChecked(), "24 hours is the default");
    await day.check();
    const rolledAt = Date.now();
    await roll.getByRole("button", { name: "Roll key", exact: true }).click();
    const reveal = p.getByRole("dialog", { name: "Your new API key" });
    await reveal.waitFor();
    const newKey = await p.getByLabel("API key", { exact: true }).inputValue();
    assert.match(newKey, /^atv2_[0-9A-Za-z]{59}$/);
    assert.notEqual(newKey, oldKey);
    await reveal.getByText(`The old key ${oldPrefix}… keeps working until`).waitFor();
    await p.screenshot({ path: `${ARTIFACTS}settings-roll.png` });
    await reveal.getByRole("button", { name: "I have saved it" }).click();

    // During the grace period both keys work.
    const withOld = await chat(oldKey, { message: "Still on the old key" });
    assert.equal(withOld.status, 200, JSON.stringify(withOld.body));
    const withNew = await chat(newKey, { message: "Already on the new key" });
    assert.equal(withNew.status, 200, JSON.stringify(withNew.body));

    // The keys point at each other; the old one expires in 24 hours; the new one keeps the
    // old one's settings.
    let keys = (await call("GET", "/api/settings/api-keys", token)).body.keys;
    const old = keys.find((k) => k.id === created.body.id);
    const successor = keys.find((k) => k.rolledFrom === created.body.id);
    assert.ok(successor, JSON.stringify(keys));
    assert.equal(old.rolledTo, successor.id);
    assert.ok(newKey.startsWith(successor.prefix));
    assert.equal(successor.name, "Rolling Integration");
    assert.equal(successor.rateLimitPerMinute, 40);
    assert.ok(Math.abs(Date.parse(old.expiresAt) - rolledAt - 86400_000) < 120_000, old.expiresAt);

    // The table says so, and the old key cannot be rolled a second time.
    const oldRow = keyRow(p, "Rolling Integration", oldPrefix);
    const newRow = keyRow(p, "Rolling Integration", successor.prefix);
    await newRow.waitFor();
    assert.match(await oldRow.innerText(), new RegExp(`Rolled to\\s+${escapeRe(successor.prefix)}…`));
    assert.match(await newRow.innerText(), new RegExp(`Replaces\\s+${escapeRe(oldPrefix)}…`));
    assert.equal(await oldRow.getByRole("button", { name: /^Roll key/ }).count(), 0);
    assert.equal(await newRow.getByRole("button", { name: /^Roll key/ }).count(), 1);

    // Limit the new key to one agent, created since the page loaded.
    const agent = await call("POST", "/api/settings/agents", token, { name: "Contract Reviewer", instructions: "Review contracts." });
    assert.equal(agent.status, 201);
    await p.getByRole("button", { name: `Edit key Rolling Integration (${successor.prefix}…)` }).click();
    const edit = p.getByRole("dialog", { name: "Edit key Rolling Integration" });
    await edit.waitFor();
    assert.equal(await edit.getByLabel("Name of the key").inputValue(), "Rolling Integration");
    assert.equal(await edit.getByLabel("Rate limit (requests per minute)").inputValue(), "40");
    const all = edit.getByRole("checkbox", { name: "All agents and the default assistant" });
    assert.ok(await all.isChecked());
    const only = edit.getByRole("checkbox", { name: "Contract Reviewer" });
    assert.ok(await only.isDisabled(), "the list does not apply while all agents are allowed");
    await all.uncheck();
    await only.check();
    await edit.getByRole("button", { name: "Save key" }).click();
    await edit.waitFor({ state: "hidden" });
    await newRow.getByRole("cell", { name: "Contract Reviewer" }).waitFor();
    keys = (await call("GET", "/api/settings/api-keys", token)).body.keys;
    assert.deepEqual(keys.find((k) => k.id === successor.id).allowedAgentIds, [agent.body.id]);
    assert.equal(keys.find((k) => k.id === successor.id).rateLimitPerMinute, 40, "only the agents changed");

    // The key now answers for that agent only.
    const noAgent = await chat(newKey, { message: "Which agent am I?" });
    assert.equal(noAgent.status, 403);
    assert.equal(noAgent.body.error, "Agent not allowed for this key");
    const withAgent = await chat(newKey, { message: "Review this contract", agentId: agent.body.id });
    assert.equal(withAgent.status, 200, JSON.stringify(withAgent.body));

    // A new key can be limited from the start, in the create form.
    const form = p.locator("#key-form");
    await p.getByLabel("Key name").fill("Reviewer Only");
    await form.getByRole("checkbox", { name: "All agents and the default assistant" }).uncheck();
    await form.getByRole("checkbox", { name: "Contract Reviewer" }).check();
    await p.getByRole("button", { name: "Create Key" }).click();
    await reveal.waitFor();
    const scopedKey = await p.getByLabel("API key", { exact: true }).inputValue();
    await reveal.getByRole("button", { name: "I have saved it" }).click();
    keys = (await call("GET", "/api/settings/api-keys", token)).body.keys;
    assert.deepEqual(keys.find((k) => k.name === "Reviewer Only").allowedAgentIds, [agent.body.id]);
    assert.equal((await chat(scopedKey, { message: "Default assistant, please" })).status, 403);

    // The audit log tells the story, with what changed.
    await p.getByRole("tab", { name: "Audit log" }).click();
    const edited = p.getByRole("row", { name: /Edited an API key/ });
    await edited.waitFor();
    assert.match(await edited.innerText(), /agents: all → Contract Reviewer/);
    assert.match(await p.getByRole("row", { name: /Rolled an API key/ }).innerText(), /24 more hours/);
    assert.deepEqual(problems, []);
  } finally {
    await p.context().close();
  }
});

// ---- agents: tools --------------------------------------------------------------------------

test("an admin gives an agent tools, changes them, and sees them in the agents table", async () => {
  const token = await freshAdmin();
  const { p, problems } = await page();
  try {
    await signIn(p, token);
    await p.getByRole("tab", { name: "Agents" }).click();
    const form = p.locator("#agent-form");
    const tools = form.getByRole("group", { name: "Tools" });
    const box = (name) => tools.getByRole("checkbox", { name });
    await tools.waitFor();
    for (const name of ["Search records", "Query records", "Aggregate records"]) {
      assert.ok(!(await box(name).isChecked()), `${name} is not given by default`);
    }
    const described = await box("Query records").evaluate((el) => document.getElementById(el.getAttribute("aria-describedby")).textContent);
    assert.match(described, /largest open deals/);

    // Create with two tools, checked out of order: the API keeps its own order.
    await p.getByLabel("Name", { exact: true }).fill("Deal Desk");
    await p.getByLabel("Instructions").fill("Answer questions about deals with numbers.");
    await box("Aggregate records").check();
    await box("Search records").check();
    await p.getByRole("button", { name: "Create agent" }).click();
    const row = p.getByRole("row", { name: /Deal Desk/ });
    await row.waitFor();
    const { agents } = (await call("GET", "/api/settings/agents", token)).body;
    const id = agents.find((a) => a.name === "Deal Desk").id;
    const stored = async () => {
      const got = await call("GET", `/api/settings/agents/${id}`, token);
      assert.equal(got.status, 200, JSON.stringify(got.body));
      return got.body;
    };
    assert.deepEqual((await stored()).tools, ["search_records", "aggregate_records"]);
    await row.getByRole("cell", { name: "search, aggregate", exact: true }).waitFor();
    assert.ok(!(await box("Search records").isChecked()), "the form is reset after creating");
    await p.locator("#panel-agents").screenshot({ path: `${ARTIFACTS}settings-agent-tools.png` });

    // Edit: the form shows the agent's tools; swap search for query.
    await p.getByRole("button", { name: "Edit agent Deal Desk" }).click();
    assert.ok(await box("Search records").isChecked());
    assert.ok(!(await box("Query records").isChecked()));
    assert.ok(await box("Aggregate records").isChecked());
    await box("Search records").uncheck();
    await box("Query records").check();
    const patched = p.waitForRequest((r) => r.method() === "PATCH");
    await p.getByRole("button", { name: "Save changes" }).click();
    assert.deepEqual((await patched).postDataJSON().tools, ["query_records", "aggregate_records"]);
    await row.getByRole("cell", { name: "query, aggregate", exact: true }).waitFor();
    assert.deepEqual((await stored()).tools, ["query_records", "aggregate_records"]);

    // Knowledge off: a note says the tools need it, and saving still works. The tools were not
    // changed, so the PATCH leaves them out, and the API keeps them.
    await p.getByRole("button", { name: "Edit agent Deal Desk" }).click();
    const note = p.getByText("Tools need workspace knowledge");
    assert.ok(await note.isHidden());
    await p.getByRole("checkbox", { name: "Use workspace knowledge" }).uncheck();
    await note.waitFor();
    assert.ok(await box("Query records").isEnabled(), "tools stay editable without knowledge");
    const withoutTools = p.waitForRequest((r) => r.method() === "PATCH");
    await p.getByRole("button", { name: "Save changes" }).click();
    assert.ok(!("tools" in (await withoutTools).postDataJSON()), "unchanged tools are not sent");
    await row.getByText("Unused while knowledge is off").waitFor();
    const off = await stored();
    assert.equal(off.knowledge.enabled, false);
    assert.deepEqual(off.tools, ["query_records", "aggregate_records"]);
    assert.ok(await note.isHidden(), "the form is reset after saving");

    // Knowledge back on and every tool cleared.
    await p.getByRole("button", { name: "Edit agent Deal Desk" }).click();
    await note.waitFor();
    await p.getByRole("checkbox", { name: "Use workspace knowledge" }).check();
    assert.ok(await note.isHidden());
    await box("Query records").uncheck();
    await box("Aggregate records").uncheck();
    await p.getByRole("button", { name: "Save changes" }).click();
    await row.getByRole("cell", { name: "None", exact: true }).waitFor();
    const cleared = await stored();
    assert.deepEqual(cleared.tools, []);
    assert.equal(cleared.knowledge.enabled, true);
    assert.deepEqual(problems, []);
  } finally {
    await p.context().close();
  }
});

// ---- dashboards -----------------------------------------------------------------------------

test("an admin creates an insight, refreshes it, reads its answer, copies its embed snippet, edits and deletes it", async () => {
  const token = await freshAdmin();
  const agent = await call("POST", "/api/settings/agents", token, { name: "Churn Analyst", instructions: "Assess churn risk." });
  assert.equal(agent.status, 201);
  // Every generation of this insight (the first one, started on create, and the refresh) gets
  // this answer from the LLM stand-in, a second late: long enough to see the refresh running.
  const tag = `insight-${Date.now()}`;
  const reply = "Three accounts are at risk: Acme, Globex and Initech.";
  const scripted = await fetch(`${process.env.LLM_STUB_URL}/_stub/scenario`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ tag, steps: [{ reply, delay_ms: 1000 }] }),
  });
  assert.equal(scripted.status, 200);
  const { p, problems } = await page();
  try {
    await signIn(p, token);
    await p.getByRole("tab", { name: "Dashboards" }).click();
    await p.getByText("No insights yet.").waitFor();

    // Create: name, prompt, agent and refresh interval, in a dialog.
    await p.getByRole("button", { name: "New insight" }).click();
    const create = p.getByRole("dialog", { name: "New insight" });
    await create.waitFor();
    await create.getByLabel("Insight name").fill("Renewal risk");
    await create.getByLabel("Prompt").fill(`Which accounts are at risk of churning this quarter? (${tag})`);
    const agentSelect = create.getByLabel("Agent", { exact: true });
    assert.deepEqual(await agentSelect.locator("option").allInnerTexts(), ["Default assistant", "Churn Analyst"]);
    await agentSelect.selectOption({ label: "Churn Analyst" });
    const interval = create.getByLabel("Refresh every");
    assert.deepEqual(await interval.locator("option").allInnerTexts(), ["5 min", "15 min", "1 h", "6 h", "24 h", "7 days"]);
    assert.equal(await interval.inputValue(), "3600", "1 h is the default");
    await interval.selectOption({ label: "6 h" });
    await create.getByRole("button", { name: "Create insight" }).click();
    await create.waitFor({ state: "hidden" });
    const row = p.getByRole("row", { name: /Renewal risk/ });
    await row.waitFor();
    await row.getByRole("cell", { name: "Churn Analyst", exact: true }).waitFor();
    let { insights } = (await call("GET", "/api/settings/insights", token)).body;
    assert.equal(insights.length, 1);
    const id = insights[0].id;
    assert.match(id, /^ins_/);
    assert.equal(insights[0].name, "Renewal risk");
    assert.equal(insights[0].agentId, agent.body.id);
    assert.equal(insights[0].refreshSeconds, 21600);

    // Refresh now: the button shows the generation running, then the row the fresh answer.
    const refresh = p.getByRole("button", { name: "Refresh insight Renewal risk" });
    await refresh.click();
    await p.waitForFunction(() => [...document.querySelectorAll("#insights-table button")].some((b) => b.textContent === "Refreshing…" && b.disabled));
    await p.waitForFunction(() => [...document.querySelectorAll("#insights-table button")].some((b) => b.textContent === "Refresh" && !b.disabled), null, { timeout: 60_000 });
    await row.getByRole("cell", { name: "Fresh", exact: true }).waitFor();
    const cells = await row.locator("td").allInnerTexts();
    assert.notEqual(cells[3], "Never", "last generated");
    assert.ok(digits(cells[5]) > 0, `tokens used: ${cells[5]}`);
    const fresh = (await call("GET", `/api/settings/insights/${id}`, token)).body;
    assert.equal(fresh.status, "fresh");
    assert.equal(fresh.answer, reply);

    // The answer, in a dialog.
    await p.getByRole("button", { name: "View answer of Renewal risk" }).click();
    const answer = p.getByRole("dialog", { name: "Answer: Renewal risk" });
    await answer.waitFor();
    await answer.getByText(reply).waitFor();
    await p.screenshot({ path: `${ARTIFACTS}settings-dashboards-answer.png` });
    await answer.getByRole("button", { name: "Close" }).click();

    // The embed snippets: the page's HTML and the server's token call, each with a copy button.
    await p.getByRole("button", { name: "Embed insight Renewal risk" }).click();
    const embed = p.getByRole("dialog", { name: "Embed Renewal risk" });
    await embed.waitFor();
    await embed.getByRole("button", { name: "Copy HTML" }).click();
    await embed.getByText("Copied to the clipboard.").waitFor();
    const html = await p.evaluate(() => navigator.clipboard.readText());
    assert.ok(html.includes(`${BASE}/embed/v1.js`), html);
    assert.ok(html.includes(`insight="${id}"`), html);
    await embed.getByLabel("Language").selectOption({ label: "Python (standard library)" });
    const python = await embed.getByLabel("Server code").inputValue();
    assert.match(python, /import urllib\.request/);
    assert.ok(python.includes(`${BASE}/api/embed-tokens`) && python.includes(id), python);
    await embed.getByRole("button", { name: "Copy server code" }).click();
    await embed.getByText("Copied to the clipboard.").waitFor();
    assert.equal(await p.evaluate(() => navigator.clipboard.readText()), python);
    await p.screenshot({ path: `${ARTIFACTS}settings-dashboards-embed.png` });
    await embed.getByRole("button", { name: "Done" }).click();

    // Edit the name and the interval: only those are sent, and the answer is not asked again.
    await p.getByRole("button", { name: "Edit insight Renewal risk" }).click();
    const edit = p.getByRole("dialog", { name: "Edit insight Renewal risk" });
    await edit.waitFor();
    assert.equal(await edit.getByLabel("Insight name").inputValue(), "Renewal risk");
    assert.equal(await edit.getByLabel("Agent", { exact: true }).inputValue(), agent.body.id);
    assert.equal(await edit.getByLabel("Refresh every").inputValue(), "21600");
    await edit.getByLabel("Insight name").fill("Renewal risk (weekly)");
    await edit.getByLabel("Refresh every").selectOption({ label: "7 days" });
    const patched = p.waitForRequest((r) => r.method() === "PATCH");
    await edit.getByRole("button", { name: "Save insight" }).click();
    assert.deepEqual((await patched).postDataJSON(), { name: "Renewal risk (weekly)", refreshSeconds: 604800 });
    const edited = p.getByRole("row", { name: /Renewal risk \(weekly\)/ });
    await edited.waitFor();
    assert.match(await edited.innerText(), /Every 7 days/);
    ({ insights } = (await call("GET", "/api/settings/insights", token)).body);
    assert.deepEqual([insights[0].name, insights[0].refreshSeconds, insights[0].answer], ["Renewal risk (weekly)", 604800, reply]);
    await p.locator("#panel-dashboards").screenshot({ path: `${ARTIFACTS}settings-dashboards.png` });

    // Delete, after confirming.
    p.once("dialog", (d) => d.accept());
    await p.getByRole("button", { name: "Delete insight Renewal risk (weekly)" }).click();
    await edited.waitFor({ state: "detached" });
    await p.getByText("No insights yet.").waitFor();
    assert.deepEqual((await call("GET", "/api/settings/insights", token)).body.insights, []);
    assert.equal((await call("GET", `/api/settings/insights/${id}`, token)).status, 404);

    // The audit log tells the story.
    await p.getByRole("tab", { name: "Audit log" }).click();
    await p.getByRole("cell", { name: "Deleted an insight" }).waitFor();
    for (const what of ["Created an insight", "Refreshed an insight", "Edited an insight"]) await p.getByRole("cell", { name: what }).first().waitFor();
    assert.match(await p.getByRole("row", { name: /Edited an insight/ }).innerText(), /name: “Renewal risk” → “Renewal risk \(weekly\)”; refresh: every 6 h → every 7 days/);
    assert.deepEqual(problems, []);
  } finally {
    await p.context().close();
  }
});
