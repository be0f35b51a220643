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
  assert.match(key, /^atv_[0-9A-Za-z]{36}$/);
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
  await p.getByRole("button", { name: "Save changes" }).click();
  const edited = p.getByRole("row", { name: /Renewal Risk v2/ });
  await edited.waitFor();
  assert.match(await edited.innerText(), /gpt-4o/);
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
  assert.match(await deletedKey.innerText(), /Browser Integration\s+atv_\w+…/);
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
