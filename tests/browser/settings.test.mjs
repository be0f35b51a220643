// Browser test of the settings page, in Debian's headless Chromium driven by playwright-core.
// Run by tests/e2e.sh against the same local stack as the API suite, with node's test runner.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
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
