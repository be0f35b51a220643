// Settings page for workspace admins: API keys, agents and the audit log, through the
// settings JSON routes only. The admin token lives in sessionStorage (this tab only); a newly
// created key is held in the reveal dialog and nowhere else.
"use strict";

const TOKEN_KEY = "attive.adminToken";
const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, body) {
    const details = body && body.details;
    const extra = typeof details === "string" ? details : details && details.rule ? `${details.field} ${details.rule}` : "";
    super((body && body.error ? body.error : `Request failed (${status})`) + (extra && !String(body.error).includes(extra) ? `: ${extra}` : ""));
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: "The service could not be reached. Check your connection and try again." });
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// ---- formatting ---------------------------------------------------------------------------

function relative(iso) {
  if (!iso) return "Never";
  const secs = Math.round((Date.now() - Date.parse(iso)) / 1000);
  const abs = Math.abs(secs);
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const fmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of units) {
    if (abs >= size) return fmt.format(-Math.round(secs / size), unit);
  }
  return abs < 10 ? "just now" : fmt.format(-secs, "second");
}

function date(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
}

function cell(text, opts = {}) {
  const td = document.createElement("td");
  if (opts.code) {
    const code = document.createElement("code");
    code.textContent = text;
    td.appendChild(code);
  } else {
    td.textContent = text;
  }
  if (opts.title) td.title = opts.title;
  return td;
}

function trashIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M9 3h6l1 2h4v2H4V5h4l1-2zM6 9h12l-1 12H7L6 9zm4 2v8h2v-8h-2zm4 0v8h2v-8h-2z");
  path.setAttribute("fill", "currentColor");
  svg.appendChild(path);
  return svg;
}

function button(label, aria, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  if (typeof label === "string") b.textContent = label;
  else b.appendChild(label);
  b.setAttribute("aria-label", aria);
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

// Fills a table body with one row per item (cells from `row`), and shows the empty note
// when there is nothing.
function renderTable(tableId, emptyId, items, row) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(
    ...items.map((item) => {
      const tr = document.createElement("tr");
      tr.append(...row(item));
      return tr;
    }),
  );
  $(emptyId).hidden = items.length > 0;
}

function actionsCell(...buttons) {
  const td = document.createElement("td");
  td.append(...buttons);
  return td;
}

function showError(message) {
  const el = $("app-error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function guarded(fn) {
  showError("");
  try {
    await fn();
  } catch (e) {
    if (e.status === 401) return signOut("Your admin token is no longer accepted. Sign in again.");
    showError(e.message);
  }
}

// ---- sign in / out ------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const value = $("admin-token").value.trim();
  const err = $("sign-in-error");
  err.hidden = true;
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api("GET", "/api/settings/api-keys");
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    err.textContent = e.status === 401 ? "That admin token was not accepted. Check it and try again." : e.message;
    err.hidden = false;
    return;
  }
  $("admin-token").value = "";
  showApp();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  const err = $("sign-in-error");
  err.textContent = message || "";
  err.hidden = !message;
  $("admin-token").focus();
}

function showApp() {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  selectTab("keys");
}

// ---- tabs -----------------------------------------------------------------------------------

const TABS = ["keys", "agents", "audit"];
const LOADERS = { keys: loadKeys, agents: loadAgents, audit: loadAudit };

function selectTab(name) {
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
  }
  guarded(LOADERS[name]);
}

function onTabKey(event) {
  const i = TABS.indexOf(event.target.id.replace("tab-", ""));
  let next = null;
  if (event.key === "ArrowRight") next = TABS[(i + 1) % TABS.length];
  if (event.key === "ArrowLeft") next = TABS[(i + TABS.length - 1) % TABS.length];
  if (next) {
    selectTab(next);
    $(`tab-${next}`).focus();
  }
}

// ---- API keys -------------------------------------------------------------------------------

async function loadKeys() {
  const { keys } = await api("GET", "/api/settings/api-keys");
  renderTable("keys-table", "keys-empty", keys, (k) => [
    cell(k.name),
    cell(`${k.prefix}…`, { code: true }),
    cell(k.createdBy),
    cell(date(k.createdAt), { title: k.createdAt }),
    cell(relative(k.lastUsedAt), { title: k.lastUsedAt || "" }),
    cell(k.expiresAt ? date(k.expiresAt) : "Never", { title: k.expiresAt || "" }),
    cell(k.rateLimitPerMinute ? `${k.rateLimitPerMinute}/min` : "Default"),
    actionsCell(button(trashIcon(), `Delete key ${k.name}`, () => deleteKey(k), "danger")),
  ]);
}

async function createKey(event) {
  event.preventDefault();
  const form = event.target;
  const payload = { name: form.name.value.trim() };
  if (form.expiresAt.value) payload.expiresAt = new Date(form.expiresAt.value).toISOString();
  if (form.rateLimitPerMinute.value) payload.rateLimitPerMinute = Number(form.rateLimitPerMinute.value);
  await guarded(async () => {
    const created = await api("POST", "/api/settings/api-keys", payload);
    form.reset();
    reveal(created.key);
    await loadKeys();
  });
}

function reveal(key) {
  $("reveal-key").value = key;
  $("copy-status").textContent = "";
  $("reveal").showModal();
  $("reveal-key").select();
}

async function copyKey() {
  try {
    await navigator.clipboard.writeText($("reveal-key").value);
    $("copy-status").textContent = "Copied to the clipboard.";
  } catch (e) {
    $("reveal-key").select();
    $("copy-status").textContent = "Copy failed: select the key and copy it by hand.";
  }
}

function closeReveal() {
  // The key leaves the page with the dialog: it was never stored anywhere else.
  $("reveal-key").value = "";
  $("reveal").close();
}

async function deleteKey(k) {
  if (!confirm(`Delete the key "${k.name}" (${k.prefix}…)? Applications using it lose access immediately.`)) return;
  await guarded(async () => {
    await api("DELETE", `/api/settings/api-keys/${encodeURIComponent(k.id)}`);
    await loadKeys();
  });
}

// ---- agents ---------------------------------------------------------------------------------

async function loadAgents() {
  const { agents } = await api("GET", "/api/settings/agents");
  renderTable("agents-table", "agents-empty", agents, (a) => [
    cell(a.name),
    cell(a.id, { code: true }),
    cell(a.model || "Default"),
    cell(relative(a.updatedAt), { title: a.updatedAt }),
    actionsCell(
      button("Edit", `Edit agent ${a.name}`, () => editAgent(a)),
      button("Delete", `Delete agent ${a.name}`, () => deleteAgent(a), "danger"),
    ),
  ]);
}

function editAgent(a) {
  $("agent-id").value = a.id;
  $("agent-name").value = a.name;
  $("agent-instructions").value = a.instructions;
  $("agent-model").value = a.model || "";
  $("agent-form-title").textContent = `Edit agent ${a.name}`;
  $("agent-submit").textContent = "Save changes";
  $("agent-cancel").hidden = false;
  $("agent-name").focus();
}

function resetAgentForm() {
  $("agent-form").reset();
  $("agent-id").value = "";
  $("agent-form-title").textContent = "Create an agent";
  $("agent-submit").textContent = "Create agent";
  $("agent-cancel").hidden = true;
}

async function saveAgent(event) {
  event.preventDefault();
  const form = event.target;
  const id = $("agent-id").value;
  const payload = { name: form.name.value.trim(), instructions: form.instructions.value, model: form.model.value.trim() || null };
  await guarded(async () => {
    if (id) await api("PATCH", `/api/settings/agents/${encodeURIComponent(id)}`, payload);
    else await api("POST", "/api/settings/agents", payload);
    resetAgentForm();
    await loadAgents();
  });
}

async function deleteAgent(a) {
  if (!confirm(`Delete the agent "${a.name}"? Its chats stay readable but can no longer be continued.`)) return;
  await guarded(async () => {
    await api("DELETE", `/api/settings/agents/${encodeURIComponent(a.id)}`);
    if ($("agent-id").value === a.id) resetAgentForm();
    await loadAgents();
  });
}

// ---- audit log ------------------------------------------------------------------------------

const ACTIONS = {
  "api_key.created": "Created an API key",
  "api_key.deleted": "Deleted an API key",
  "agent.created": "Created an agent",
  "agent.updated": "Edited an agent",
  "agent.deleted": "Deleted an agent",
};

async function loadAudit() {
  const { entries } = await api("GET", "/api/settings/audit-log?limit=100");
  renderTable("audit-table", "audit-empty", entries, (e) => [
    cell(relative(e.createdAt), { title: e.createdAt }),
    cell(e.actor),
    cell(ACTIONS[e.action] || e.action),
    targetCell(e),
  ]);
}

// What the entry is about, as recorded when it happened: the name (and a key's prefix), with
// the id as a tooltip; entries older than names show the id alone.
function targetCell(e) {
  if (!e.targetName) return cell(e.target, { code: true });
  const td = cell(e.targetName, { title: e.target });
  if (e.targetPrefix) {
    const code = document.createElement("code");
    code.textContent = `${e.targetPrefix}…`;
    td.append(" ", code);
  }
  return td;
}

// ---- wiring ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  for (const t of TABS) {
    $(`tab-${t}`).addEventListener("click", () => selectTab(t));
    $(`tab-${t}`).addEventListener("keydown", onTabKey);
  }
  $("key-form").addEventListener("submit", createKey);
  $("copy-key").addEventListener("click", copyKey);
  $("reveal-done").addEventListener("click", closeReveal);
  $("reveal").addEventListener("cancel", closeReveal);
  $("agent-form").addEventListener("submit", saveAgent);
  $("agent-cancel").addEventListener("click", resetAgentForm);
  if (token()) showApp();
  else $("admin-token").focus();
});
