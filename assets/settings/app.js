// Settings page for workspace admins: API keys and their usage, agents, workspace knowledge and
// the audit log, through the settings JSON routes only. The admin token lives in sessionStorage
// (this tab only); a newly created key is held in the reveal dialog and nowhere else.
"use strict";

const TOKEN_KEY = "attive.adminToken";
// The kinds of workspace knowledge records, in the API's order.
const KINDS = ["deal", "account", "contact", "note", "feedback", "document"];
// The tools an agent may be given, in the API's order, each with its word in the agents table.
const TOOLS = { search_records: "search", query_records: "query", aggregate_records: "aggregate" };
const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// The part of an error's `details` worth a sentence: a field's rule, and any list of names
// (such as the agent ids a key cannot be scoped to, which the admin has to fix).
function detailText(details) {
  if (typeof details === "string") return details;
  if (!details || typeof details !== "object") return "";
  const parts = details.rule ? [`${details.field} ${details.rule}`] : [];
  for (const [name, value] of Object.entries(details)) {
    if (Array.isArray(value) && value.length && value.every((v) => typeof v === "string")) parts.push(`${name}: ${value.join(", ")}`);
  }
  return parts.join("; ");
}

class ApiError extends Error {
  constructor(status, body) {
    const extra = detailText(body && body.details);
    super((body && body.error ? body.error : `Request failed (${status})`) + (extra && !String(body.error).includes(extra) ? `: ${extra}` : ""));
    this.status = status;
    this.body = body;
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

function count(n) {
  return (n || 0).toLocaleString();
}

// "1 error", "2 errors"; `plural` where adding an "s" is not it.
function counted(n, word, plural = `${word}s`) {
  return `${count(n)} ${n === 1 ? word : plural}`;
}

function cell(text, opts = {}) {
  const td = document.createElement("td");
  if (opts.num) td.className = "num";
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

function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function trashIcon() {
  const svg = svgEl("svg", { viewBox: "0 0 24 24", width: 18, height: 18, "aria-hidden": "true" });
  svg.appendChild(svgEl("path", { d: "M9 3h6l1 2h4v2H4V5h4l1-2zM6 9h12l-1 12H7L6 9zm4 2v8h2v-8h-2zm4 0v8h2v-8h-2z", fill: "currentColor" }));
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
  td.className = "row-actions";
  td.append(...buttons.filter(Boolean));
  return td;
}

function showError(message) {
  const el = $("app-error");
  el.textContent = message || "";
  el.hidden = !message;
}

const SIGNED_OUT = "Your admin token is no longer accepted. Sign in again.";

async function guarded(fn) {
  showError("");
  try {
    await fn();
  } catch (e) {
    if (e.status === 401) return signOut(SIGNED_OUT);
    showError(e.message);
  }
}

// A dialog's request shows its error in the dialog, where the admin is looking (the page's
// error line is behind the backdrop).
async function inDialog(errorId, fn) {
  const el = $(errorId);
  el.hidden = true;
  try {
    await fn();
  } catch (e) {
    if (e.status === 401) return signOut(SIGNED_OUT);
    el.textContent = e.message;
    el.hidden = false;
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
  for (const id of ["reveal", "roll-dialog", "edit-dialog"]) if ($(id).open) $(id).close();
  $("reveal-key").value = "";
  clearKnowledge();
  clearUsage();
  // An agent half edited belongs to the workspace signed out of.
  resetAgentForm();
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

const TABS = ["keys", "usage", "agents", "knowledge", "audit"];
const LOADERS = { keys: loadKeys, usage: loadUsage, agents: loadAgents, knowledge: loadKnowledge, audit: loadAudit };

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
  if (event.key === "Home") next = TABS[0];
  if (event.key === "End") next = TABS[TABS.length - 1];
  if (next) {
    event.preventDefault();
    selectTab(next);
    $(`tab-${next}`).focus();
  }
}

// ---- API keys -------------------------------------------------------------------------------

// Rolling gives the new key the old one's name, so buttons and notes also name the prefix.
const keyLabel = (k) => `${k.name} (${k.prefix}…)`;

async function loadKeys() {
  const [{ keys }, { agents }] = await Promise.all([api("GET", "/api/settings/api-keys"), api("GET", "/api/settings/agents")]);
  // A key can only be limited to agents: without any, the choice is not offered.
  $("key-agents-choice").hidden = agents.length === 0;
  refreshAgentChoice("key", agents);
  const byId = new Map(keys.map((k) => [k.id, k]));
  const agentNames = new Map(agents.map((a) => [a.id, a.name]));
  renderTable("keys-table", "keys-empty", keys, (k) => [
    keyNameCell(k, byId),
    cell(`${k.prefix}…`, { code: true }),
    cell(k.createdBy),
    cell(date(k.createdAt), { title: k.createdAt }),
    cell(relative(k.lastUsedAt), { title: k.lastUsedAt || "" }),
    cell(count(k.requests30d), { num: true }),
    cell(expiryLabel(k), { title: k.expiresAt || "" }),
    cell(k.rateLimitPerMinute ? `${k.rateLimitPerMinute}/min` : "Default"),
    cell(agentsLabel(k.allowedAgentIds, agentNames)),
    actionsCell(
      // An expired key cannot change, except the name of a rolled one (the API says 409).
      expired(k) && !k.rolledTo ? null : button("Edit", `Edit key ${keyLabel(k)}`, () => guarded(() => editKey(k))),
      // A key is rolled once; its successor is the one to roll next.
      k.rolledTo ? null : button("Roll", `Roll key ${keyLabel(k)}`, () => rollKey(k)),
      button(trashIcon(), `Delete key ${keyLabel(k)}`, () => deleteKey(k), "danger"),
    ),
  ]);
}

// The name, and where a rolled key went or came from: during the grace period both keys work
// and share a name, and the note tells them apart.
function keyNameCell(k, byId) {
  const td = cell(k.name);
  const link = (text, id) => {
    const note = document.createElement("span");
    note.className = "note";
    const other = byId.get(id);
    note.append(`${text} `);
    if (other) {
      const code = document.createElement("code");
      code.textContent = `${other.prefix}…`;
      note.append(code);
    } else {
      note.append("a deleted key");
    }
    return note;
  };
  if (k.rolledTo) td.append(link("Rolled to", k.rolledTo));
  if (k.rolledFrom) td.append(link("Replaces", k.rolledFrom));
  return td;
}

function expiryLabel(k) {
  if (!k.expiresAt) return "Never";
  return expired(k) ? `Expired ${date(k.expiresAt)}` : date(k.expiresAt);
}

const expired = (k) => k.expiresAt != null && Date.parse(k.expiresAt) <= Date.now();

// Agents a key may use, by name; an id no longer in the workspace shows as such. A list left
// empty by deleted agents lets the key reach nothing until it is edited.
function agentsLabel(ids, names) {
  if (!ids) return "All";
  if (ids.length === 0) return "None";
  return ids.map((id) => names.get(id) || `${id} (deleted)`).join(", ");
}

async function createKey(event) {
  event.preventDefault();
  const form = event.target;
  const payload = { name: form.name.value.trim() };
  if (form.expiresAt.value) payload.expiresAt = new Date(form.expiresAt.value).toISOString();
  if (form.rateLimitPerMinute.value) payload.rateLimitPerMinute = Number(form.rateLimitPerMinute.value);
  const scope = agentChoice("key");
  if (scope === undefined) return showError(NO_AGENT);
  if (scope) payload.allowedAgentIds = scope;
  await guarded(async () => {
    const created = await api("POST", "/api/settings/api-keys", payload);
    form.reset();
    syncAgentChoice("key");
    reveal(created.key);
    await loadKeys();
  });
}

function reveal(key, note) {
  $("reveal-key").value = key;
  $("copy-status").textContent = "";
  $("reveal-note").textContent = note || "";
  $("reveal-note").hidden = !note;
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

// ---- rolling a key ----

// The key the roll dialog is about.
let rolling = null;

function rollKey(k) {
  rolling = k;
  $("roll-form").reset();
  $("roll-error").hidden = true;
  $("roll-title").textContent = `Roll key ${k.name}`;
  $("roll-about").textContent =
    `A new key replaces ${keyLabel(k)}, with the same name, rate limit, expiry and agents. ` +
    "Move your applications to the new key before the old one stops working.";
  $("roll-dialog").showModal();
}

async function submitRoll(event) {
  event.preventDefault();
  const k = rolling;
  const gracePeriodSeconds = Number(new FormData($("roll-form")).get("grace"));
  $("roll-submit").disabled = true;
  try {
    await inDialog("roll-error", async () => {
      const rolled = await api("POST", `/api/settings/api-keys/${encodeURIComponent(k.id)}/roll`, { gracePeriodSeconds });
      closeRoll();
      reveal(rolled.key, oldKeyNote(k, rolled.previous));
    });
  } finally {
    $("roll-submit").disabled = false;
  }
  // Also after a 409 (rolled meanwhile, elsewhere): the table shows what happened.
  if (token()) await guarded(loadKeys);
}

function oldKeyNote(k, previous) {
  const until = previous && previous.expiresAt;
  if (!until || Date.parse(until) <= Date.now()) return `The old key ${k.prefix}… has stopped working.`;
  return `The old key ${k.prefix}… keeps working until ${date(until)}.`;
}

function closeRoll() {
  rolling = null;
  $("roll-dialog").close();
}

// ---- editing a key ----

// The key the edit dialog is about.
let editing = null;

// A time as a datetime-local input shows it: local time, to the minute.
function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function editKey(k) {
  // The workspace's agents as of now: one created since the table loaded can be chosen.
  const { agents } = await api("GET", "/api/settings/agents");
  editing = k;
  $("edit-error").hidden = true;
  $("edit-title").textContent = `Edit key ${k.name}`;
  $("edit-name").value = k.name;
  $("edit-limit").value = k.rateLimitPerMinute == null ? "" : String(k.rateLimitPerMinute);
  $("edit-expires").value = localInput(k.expiresAt);
  renderAgentChoice("edit", agents, k.allowedAgentIds || null);
  // Only what the API allows: a rolled key's end can only move earlier (and not be cleared),
  // and of an expired rolled key only the name can change.
  const over = expired(k);
  $("edit-limit-field").hidden = over;
  $("edit-expires-field").hidden = over;
  $("edit-scope-field").hidden = over;
  $("edit-expires").required = Boolean(k.rolledTo);
  $("edit-expires").max = k.rolledTo ? localInput(k.expiresAt) : "";
  $("edit-expires-hint").textContent = k.rolledTo ? "Rolled: this key's end can only move earlier." : "Empty: never expires.";
  $("edit-rolled-note").hidden = !over;
  $("edit-rolled-note").textContent = over ? "This key was rolled and has expired: only its name can change." : "";
  $("edit-dialog").showModal();
  $("edit-name").focus();
}

// ---- the agents a key may use (create form and edit dialog) ----
// Elements `<form>-all-agents` (checkbox), `<form>-agents` (fieldset of the list),
// `<form>-agent-list` and `<form>-agents-empty`.

const NO_AGENT = "Choose at least one agent, or allow all agents.";

// `allowedIds`: null for all agents, else the ids to check.
function renderAgentChoice(form, agents, allowedIds) {
  $(`${form}-all-agents`).checked = !allowedIds;
  const allowed = new Set(allowedIds || []);
  $(`${form}-agent-list`).replaceChildren(
    ...agents.map((a) => {
      const label = document.createElement("label");
      label.className = "check";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = "agent";
      box.value = a.id;
      box.checked = allowed.has(a.id);
      label.append(box, ` ${a.name}`);
      return label;
    }),
  );
  $(`${form}-agents-empty`).hidden = agents.length > 0;
  syncAgentChoice(form);
}

// The list anew (agents come and go), keeping what the admin already chose.
function refreshAgentChoice(form, agents) {
  const all = $(`${form}-all-agents`).checked;
  renderAgentChoice(form, agents, all ? null : agentBoxes(form).filter((b) => b.checked).map((b) => b.value));
}

function agentBoxes(form) {
  return [...$(`${form}-agent-list`).querySelectorAll('input[name="agent"]')];
}

// The list only matters without "all agents"; disabled, it keeps the choice for when it does.
function syncAgentChoice(form) {
  $(`${form}-agents`).disabled = $(`${form}-all-agents`).checked;
}

// The scope as the API takes it: null for all agents, else the checked ids; undefined when
// none is checked, which would lock the key out of everything.
function agentChoice(form) {
  if ($(`${form}-all-agents`).checked) return null;
  const ids = agentBoxes(form).filter((b) => b.checked).map((b) => b.value);
  return ids.length ? ids : undefined;
}

// Only the fields the admin changed are sent: an expiry left as it was is not checked again
// against the clock, and saving without a change asks nothing of the API.
function keyChanges(k) {
  const changes = {};
  const name = $("edit-name").value.trim();
  if (name !== k.name) changes.name = name;
  if (expired(k)) return changes;
  const limit = $("edit-limit").value === "" ? null : Number($("edit-limit").value);
  if (limit !== (k.rateLimitPerMinute ?? null)) changes.rateLimitPerMinute = limit;
  const expires = $("edit-expires").value;
  if (expires !== localInput(k.expiresAt)) changes.expiresAt = expires ? new Date(expires).toISOString() : null;
  const scope = agentChoice("edit");
  // Ids of agents deleted since are not in the list: leaving the list alone is no change.
  const listed = new Set(agentBoxes("edit").map((b) => b.value));
  const before = k.allowedAgentIds ? k.allowedAgentIds.filter((id) => listed.has(id)).sort().join() : null;
  const after = scope ? [...scope].sort().join() : null;
  if (before !== after) changes.allowedAgentIds = scope;
  return changes;
}

async function submitEdit(event) {
  event.preventDefault();
  const k = editing;
  if (agentChoice("edit") === undefined) {
    $("edit-error").textContent = NO_AGENT;
    $("edit-error").hidden = false;
    return;
  }
  const changes = keyChanges(k);
  if (Object.keys(changes).length === 0) return closeEdit();
  $("edit-submit").disabled = true;
  try {
    await inDialog("edit-error", async () => {
      await api("PATCH", `/api/settings/api-keys/${encodeURIComponent(k.id)}`, changes);
      closeEdit();
    });
  } finally {
    $("edit-submit").disabled = false;
  }
  if (token() && !$("edit-dialog").open) await guarded(loadKeys);
}

function closeEdit() {
  editing = null;
  $("edit-dialog").close();
}

// ---- usage ----------------------------------------------------------------------------------

const DAY_MS = 86400000;
const MAX_DAYS = 366;
// The keys the filter offers, by id, as usage replies named them (deleted ones included, and
// kept while another key is shown), and the generation of the latest load: the reply of an
// older load that a newer one replaced is dropped.
const usageState = { keys: new Map(), generation: 0 };

const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
const dayMs = (day) => Date.parse(`${day}T00:00:00Z`);

function clearUsage() {
  usageState.keys.clear();
  usageState.generation++;
  $("usage-period").value = "30";
  $("usage-key").replaceChildren(new Option("All keys", ""));
  $("usage-chart").replaceChildren(
    svgEl("title", { id: "usage-chart-title" }, "Requests and tokens per day"),
    svgEl("desc", { id: "usage-chart-desc" }, "Loading…"),
  );
  $("usage-table").tBodies[0].replaceChildren();
  $("usage-table").tFoot.replaceChildren();
  $("usage-error").hidden = true;
}

// A preset period ends today (UTC) and counts today: "last 7 days" is today and the 6 before.
// Applied on every load, so a page left open overnight moves on with the days.
function applyPeriod() {
  const period = $("usage-period").value;
  if (period === "custom") return;
  const today = dayMs(isoDay(Date.now()));
  $("usage-from").value = isoDay(today - (Number(period) - 1) * DAY_MS);
  $("usage-to").value = isoDay(today);
}

function rangeProblem(from, to) {
  if (!from || !to) return "Choose the first and the last day.";
  if (from > to) return "The first day must not be after the last day.";
  if ((dayMs(to) - dayMs(from)) / DAY_MS + 1 > MAX_DAYS) return `Choose at most ${MAX_DAYS} days.`;
  return "";
}

async function loadUsage() {
  applyPeriod();
  const from = $("usage-from").value;
  const to = $("usage-to").value;
  // Also a range refused here replaces the loads before it: their replies are for other dates.
  const generation = ++usageState.generation;
  const problem = rangeProblem(from, to);
  $("usage-error").textContent = problem;
  $("usage-error").hidden = !problem;
  if (problem) return;
  const params = new URLSearchParams({ from, to });
  const keyId = $("usage-key").value;
  if (keyId) params.set("keyId", keyId);
  const usage = await api("GET", `/api/settings/usage?${params}`);
  if (generation !== usageState.generation) return;
  // A reply for all keys names every key there is to choose; one for a single key may not.
  if (!usage.keyId) usageState.keys.clear();
  for (const k of usage.keys) usageState.keys.set(k.keyId, k);
  renderKeyFilter(keyId);
  drawUsageChart(usage);
  renderUsageTable(usage);
}

function usageKeyLabel(k) {
  return `${k.name} (${k.prefix}…${k.deleted ? ", deleted" : ""})`;
}

// Keys in use first by name, deleted ones after them.
function renderKeyFilter(selected) {
  const keys = [...usageState.keys.values()].sort((a, b) => a.deleted - b.deleted || a.name.localeCompare(b.name));
  const select = $("usage-key");
  select.replaceChildren(new Option("All keys", ""), ...keys.map((k) => new Option(usageKeyLabel(k), k.keyId)));
  select.value = selected;
}

const METRICS = ["requests", "errors", "rateLimited", "promptTokens", "completionTokens"];

// An LLM time as a person reads it; the exact milliseconds are in the cell's title.
function duration(ms) {
  ms = ms || 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function usageCells(u) {
  return [...METRICS.map((m) => cell(count(u[m]), { num: true })), cell(duration(u.llmMs), { num: true, title: `${count(u.llmMs)} ms` })];
}

function renderUsageTable(usage) {
  // The route may name every key also when one is asked for; only that one is on show.
  const rows = usage.keys
    .filter((k) => !usage.keyId || k.keyId === usage.keyId)
    .sort((a, b) => b.requests - a.requests || a.deleted - b.deleted || a.name.localeCompare(b.name));
  renderTable("usage-table", "usage-empty", rows, (k) => {
    const name = cell(k.name);
    if (k.deleted) {
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = "Deleted";
      name.append(note);
    }
    return [name, cell(`${k.prefix}…`, { code: true }), ...usageCells(k)];
  });
  const total = document.createElement("tr");
  const label = document.createElement("th");
  label.scope = "row";
  label.colSpan = 2;
  label.textContent = usage.keyId ? "Total for this key" : "Total";
  total.append(label, ...usageCells(usage.totals));
  $("usage-table").tFoot.replaceChildren(total);
}

// An axis from 0 to a round number at or above `max`, in at most four round steps, so
// gridlines fall on numbers read at a glance. Counts are whole: steps are at least 1.
function niceAxis(max) {
  const top = Math.max(max, 1);
  const raw = top / 4;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw));
  return { step, top: step * Math.ceil(top / step) };
}

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const dayLabel = (day, opts) => new Date(dayMs(day)).toLocaleDateString(undefined, { timeZone: "UTC", ...opts });

// Which days get a label, so labels never run into each other (about a dozen at most): every
// day for two weeks, every few days (counted back from the last) up to two months, the 1st and
// 15th up to four, and month starts beyond.
function dayTicks(days) {
  const n = days.length;
  const label = (i, opts) => ({ i, text: dayLabel(days[i].date, opts) });
  if (n <= 14) return days.map((_, i) => label(i, { month: "short", day: "numeric" }));
  if (n <= 62) {
    const every = Math.ceil(n / 10);
    return days.flatMap((_, i) => ((n - 1 - i) % every === 0 ? [label(i, { month: "short", day: "numeric" })] : []));
  }
  if (n <= 124) {
    return days.flatMap((d, i) => (/-(01|15)$/.test(d.date) ? [label(i, { month: "short", day: "numeric" })] : []));
  }
  let first = true;
  return days.flatMap((d, i) => {
    if (!d.date.endsWith("-01")) return [];
    // The year where it changes, and on the first label.
    const opts = first || d.date.slice(5, 7) === "01" ? { month: "short", year: "numeric" } : { month: "short" };
    first = false;
    return [label(i, opts)];
  });
}

// The chart: per day a bar of requests, split into answered, errors and rate limited, on the
// left axis, and a line of tokens (prompt + completion) on the right axis. Every day of the
// range has its place, a day without requests a bar of height 0 and the line at 0. The svg is
// one image for assistive technology, described by a summary; the table below holds the numbers.
function drawUsageChart(usage) {
  const W = 1000;
  const H = 340;
  const plot = { left: 64, right: W - 72, top: 44, bottom: H - 52 };
  const width = plot.right - plot.left;
  const height = plot.bottom - plot.top;
  const days = usage.days;
  const n = Math.max(days.length, 1);
  const tokens = (d) => (d.promptTokens || 0) + (d.completionTokens || 0);
  const req = niceAxis(Math.max(0, ...days.map((d) => d.requests)));
  const tok = niceAxis(Math.max(0, ...days.map(tokens)));
  const y = (value, axis) => plot.bottom - (value / axis.top) * height;
  const slot = width / n;
  const barWidth = Math.max(slot * 0.72, 0.6);

  const chart = $("usage-chart");
  const who = usage.keyId ? usageKeyLabel(usageState.keys.get(usage.keyId) || { name: usage.keyId, prefix: "" }) : "all keys";
  const range = `${dayLabel(usage.from, { dateStyle: "medium" })} to ${dayLabel(usage.to, { dateStyle: "medium" })}`;
  const parts = [
    svgEl("title", { id: "usage-chart-title" }, `Requests and tokens per day, ${range}, ${who}`),
    svgEl("desc", { id: "usage-chart-desc" }, usageSummary(usage, tokens)),
  ];

  const grid = svgEl("g", { class: "gridlines", "aria-hidden": "true" });
  for (let v = 0; v <= req.top; v += req.step) {
    grid.append(svgEl("line", { x1: plot.left, x2: plot.right, y1: y(v, req), y2: y(v, req) }));
    grid.append(svgEl("text", { x: plot.left - 8, y: y(v, req) + 4, "text-anchor": "end" }, compact.format(v)));
  }
  for (let v = 0; v <= tok.top; v += tok.step) {
    grid.append(svgEl("line", { class: "tick", x1: plot.right, x2: plot.right + 5, y1: y(v, tok), y2: y(v, tok) }));
    grid.append(svgEl("text", { x: plot.right + 8, y: y(v, tok) + 4 }, compact.format(v)));
  }
  for (const t of dayTicks(days)) {
    const x = plot.left + (t.i + 0.5) * slot;
    grid.append(svgEl("line", { class: "tick", x1: x, x2: x, y1: plot.bottom, y2: plot.bottom + 5 }));
    grid.append(svgEl("text", { class: "day-label", x, y: plot.bottom + 19, "text-anchor": "middle" }, t.text));
  }
  grid.append(
    svgEl("line", { class: "axis", x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom }),
    svgEl("line", { class: "axis", x1: plot.right, x2: plot.right, y1: plot.top, y2: plot.bottom }),
    svgEl("line", { class: "axis", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }),
    svgEl("text", { class: "axis-title", transform: `translate(16 ${(plot.top + plot.bottom) / 2}) rotate(-90)`, "text-anchor": "middle" }, "Requests"),
    svgEl("text", { class: "axis-title", transform: `translate(${W - 12} ${(plot.top + plot.bottom) / 2}) rotate(90)`, "text-anchor": "middle" }, "Tokens"),
    svgEl("text", { class: "axis-title", x: (plot.left + plot.right) / 2, y: H - 10, "text-anchor": "middle" }, "Day (UTC)"),
  );
  parts.push(grid);

  const bars = svgEl("g", { class: "bars" });
  days.forEach((d, i) => {
    const errors = d.errors || 0;
    const limited = d.rateLimited || 0;
    const answered = Math.max(0, d.requests - errors - limited);
    const group = svgEl("g", { class: "day", "data-date": d.date, "data-requests": d.requests, "data-tokens": tokens(d) });
    group.append(
      svgEl("title", {}, `${dayLabel(d.date, { dateStyle: "medium" })}: ${requestsText(d)}, ${counted(tokens(d), "token")}`),
    );
    const x = plot.left + i * slot + (slot - barWidth) / 2;
    let base = 0;
    for (const [value, cls] of [[answered, "bar-ok"], [errors, "bar-error"], [limited, "bar-limited"]]) {
      const top = y(base + value, req);
      group.append(svgEl("rect", { class: cls, x: x.toFixed(2), y: top.toFixed(2), width: barWidth.toFixed(2), height: (y(base, req) - top).toFixed(2) }));
      base += value;
    }
    bars.append(group);
  });
  parts.push(bars);

  const points = days.map((d, i) => `${(plot.left + (i + 0.5) * slot).toFixed(2)},${y(tokens(d), tok).toFixed(2)}`);
  const line = svgEl("g", { class: "tokens" });
  line.append(svgEl("polyline", { class: "tokens-line", points: points.join(" ") }));
  // Dots only while there is room for them; a year of dots would be a second, thicker line.
  if (days.length <= 92) for (const p of points) line.append(svgEl("circle", { class: "tokens-dot", cx: p.split(",")[0], cy: p.split(",")[1], r: 2.5 }));
  parts.push(line);

  const legend = svgEl("g", { class: "legend", "aria-hidden": "true" });
  let x = plot.left;
  const entries = [
    ["bar-ok", "Answered requests"],
    ["bar-error", "Errors"],
    ["bar-limited", "Rate limited"],
    ["tokens-line", "Tokens (prompt + completion)"],
  ];
  for (const [cls, text] of entries) {
    const swatch = cls === "tokens-line" ? svgEl("line", { class: cls, x1: x, x2: x + 16, y1: 16, y2: 16 }) : svgEl("rect", { class: cls, x, y: 10, width: 12, height: 12 });
    legend.append(swatch);
    legend.append(svgEl("text", { x: x + 20, y: 20 }, text));
    x = Math.round(x + 36 + text.length * 6.6);
  }
  parts.push(legend);
  chart.replaceChildren(...parts);
}

// The chart in words, for those who do not see it.
function usageSummary(usage, tokens) {
  const t = usage.totals;
  let text =
    `${requestsText(t)} and ${counted(t.promptTokens + t.completionTokens, "token")} ` +
    `(${count(t.promptTokens)} prompt, ${count(t.completionTokens)} completion) over ${counted(usage.days.length, "day")}.`;
  const busiest = usage.days.reduce((best, d) => (!best || d.requests > best.requests ? d : best), null);
  if (busiest && busiest.requests > 0) {
    text +=
      ` The busiest day was ${dayLabel(busiest.date, { dateStyle: "medium" })},` +
      ` with ${counted(busiest.requests, "request")} and ${counted(tokens(busiest), "token")}.`;
  }
  return text;
}

function requestsText(u) {
  return `${counted(u.requests, "request")} (${counted(u.errors || 0, "error")}, ${count(u.rateLimited)} rate limited)`;
}

// ---- agents ---------------------------------------------------------------------------------

async function loadAgents() {
  const { agents } = await api("GET", "/api/settings/agents");
  renderTable("agents-table", "agents-empty", agents, (a) => [
    cell(a.name),
    cell(a.id, { code: true }),
    cell(`${a.model || "Default"}${a.provider && a.provider !== "default" ? ` on ${a.provider}` : ""}`),
    cell(knowledgeLabel(a.knowledge)),
    toolsCell(a),
    cell(relative(a.updatedAt), { title: a.updatedAt }),
    actionsCell(
      button("Edit", `Edit agent ${a.name}`, () => editAgent(a)),
      button("Delete", `Delete agent ${a.name}`, () => deleteAgent(a), "danger"),
    ),
  ]);
}

// The agent the form edits, as the table loaded it: what the tools are compared with on save.
let editingAgent = null;

function editAgent(a) {
  editingAgent = a;
  $("agent-id").value = a.id;
  $("agent-name").value = a.name;
  $("agent-instructions").value = a.instructions;
  $("agent-model").value = a.model || "";
  $("agent-provider").value = a.provider && a.provider !== "default" ? a.provider : "";
  $("agent-fallbacks").value = (a.fallbacks || []).map((f) => `${f.provider}/${f.model}`).join("\n");
  // Absent means the default: enabled, every kind (agents saved before knowledge existed).
  const k = a.knowledge || { enabled: true, kinds: null };
  $("agent-knowledge").checked = k.enabled !== false;
  for (const box of kindBoxes()) box.checked = !k.kinds || k.kinds.includes(box.value);
  for (const box of toolBoxes()) box.checked = (a.tools || []).includes(box.value);
  syncKnowledgeKinds();
  $("agent-form-title").textContent = `Edit agent ${a.name}`;
  $("agent-submit").textContent = "Save changes";
  $("agent-cancel").hidden = false;
  $("agent-name").focus();
}

function resetAgentForm() {
  editingAgent = null;
  $("agent-form").reset();
  syncKnowledgeKinds();
  $("agent-id").value = "";
  $("agent-form-title").textContent = "Create an agent";
  $("agent-submit").textContent = "Create agent";
  $("agent-cancel").hidden = true;
}

// `provider/model` lines as the API takes them; null when a line is not of that shape.
function fallbackTargets(text) {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const targets = lines.map((l) => {
    const at = l.indexOf("/");
    return at > 0 && at < l.length - 1 ? { provider: l.slice(0, at), model: l.slice(at + 1) } : null;
  });
  return targets.length <= 3 && targets.every(Boolean) ? targets : null;
}

async function saveAgent(event) {
  event.preventDefault();
  const form = event.target;
  const id = $("agent-id").value;
  const knowledge = knowledgeSetting();
  if (!knowledge) return showError("Choose at least one kind of record, or turn workspace knowledge off.");
  const fallbacks = fallbackTargets(form.fallbacks.value);
  if (!fallbacks) return showError("Write each fallback as provider/model on a line of its own, at most 3.");
  const payload = {
    name: form.name.value.trim(),
    instructions: form.instructions.value,
    model: form.model.value.trim() || null,
    provider: form.provider.value.trim() || null,
    fallbacks,
    knowledge,
  };
  // An edit sends the tools only when the admin changed them: saving other fields leaves the
  // list as the API has it, also when it was changed elsewhere since the table loaded.
  const tools = toolChoice();
  if (!id || (editingAgent.tools || []).join() !== tools.join()) payload.tools = tools;
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

function kindBoxes() {
  return [...$("agent-kinds").querySelectorAll('input[name="kind"]')];
}

// The kinds only matter while knowledge is on; a disabled fieldset says so and keeps the
// choice for when it is turned back on. Tools stay editable, as they may be chosen ahead, and
// a note says they do nothing until then.
function syncKnowledgeKinds() {
  $("agent-kinds").disabled = !$("agent-knowledge").checked;
  $("agent-tools-note").hidden = $("agent-knowledge").checked;
}

function toolBoxes() {
  return [...$("agent-tools").querySelectorAll('input[name="tool"]')];
}

// The checked tools, in the API's order (the boxes are in it, and so are an agent's tools).
function toolChoice() {
  return toolBoxes().filter((b) => b.checked).map((b) => b.value);
}

// The agent's tools, a word each. Without knowledge they are kept but unused: the row says so,
// rather than promise lookups the agent cannot make.
function toolsCell(a) {
  const tools = a.tools || [];
  const td = cell(tools.length ? tools.map((t) => TOOLS[t] || t).join(", ") : "None");
  if (tools.length && a.knowledge && a.knowledge.enabled === false) {
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = "Unused while knowledge is off";
    td.append(note);
  }
  return td;
}

// The form's knowledge setting as the API takes it: every kind checked is `kinds: null` (all
// kinds, including any added later), otherwise the checked ones. Null when knowledge is on
// with no kind, which would be "off" in disguise.
function knowledgeSetting() {
  const enabled = $("agent-knowledge").checked;
  const checked = kindBoxes().filter((b) => b.checked).map((b) => b.value);
  if (enabled && checked.length === 0) return null;
  const kinds = checked.length === 0 || checked.length === KINDS.length ? null : checked;
  return { enabled, kinds };
}

function knowledgeLabel(k) {
  if (k && k.enabled === false) return "Off";
  if (!k || !k.kinds || KINDS.every((kind) => k.kinds.includes(kind))) return "All";
  return k.kinds.join(", ");
}

// ---- knowledge ------------------------------------------------------------------------------

const RECORDS_PAGE = 50;

// What the tables do not redo on their own when the tab is shown again: the last search and
// the last import's report, which are of the workspace just signed out of.
function clearKnowledge() {
  lastSearch = null;
  $("search-q").value = "";
  $("search-status").textContent = "";
  $("search-results").replaceChildren();
  $("import-form").reset();
  $("import-error").hidden = true;
  $("import-run").hidden = true;
}

async function loadKnowledge() {
  await Promise.all([loadStats(), loadRecords(true)]);
}

async function loadStats() {
  const stats = await api("GET", "/api/settings/knowledge/stats");
  $("stat-total").textContent = (stats.total || 0).toLocaleString();
  for (const kind of KINDS) $(`stat-${kind}`).textContent = ((stats.kinds && stats.kinds[kind]) || 0).toLocaleString();
  const updated = $("stat-updated");
  updated.textContent = stats.lastUpdatedAt ? `Last updated ${relative(stats.lastUpdatedAt).toLowerCase()}` : "No records yet.";
  updated.title = stats.lastUpdatedAt || "";
}

// A link only for http(s) URLs: the API validates them, and the page does not rely on that to
// keep `javascript:` out of an href.
function recordTitle(r, tag) {
  const el = document.createElement(tag);
  if (r.url && /^https?:\/\//i.test(r.url)) {
    const a = document.createElement("a");
    a.href = r.url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = r.title;
    el.appendChild(a);
  } else {
    el.textContent = r.title;
  }
  return el;
}

// The records list: newest first, a page at a time. `generation` drops the answer of a load
// that a newer one (another kind, a refresh) has replaced.
const recordsState = { shown: [], cursor: null, generation: 0 };
// The search on show, run again after a delete so the results stay true.
let lastSearch = null;

async function loadRecords(reset) {
  const generation = reset ? ++recordsState.generation : recordsState.generation;
  const params = new URLSearchParams({ limit: String(RECORDS_PAGE) });
  const kind = $("records-kind").value;
  if (kind) params.set("kind", kind);
  if (!reset && recordsState.cursor) params.set("cursor", recordsState.cursor);
  // One page at a time: a second click while loading would fetch the same page twice.
  $("records-more").disabled = true;
  let page;
  try {
    page = await api("GET", `/api/settings/knowledge/records?${params}`);
  } finally {
    $("records-more").disabled = false;
  }
  if (generation !== recordsState.generation) return;
  recordsState.shown = reset ? page.records : recordsState.shown.concat(page.records);
  recordsState.cursor = page.nextCursor || null;
  renderTable("records-table", "records-empty", recordsState.shown, (r) => [
    recordTitle(r, "td"),
    cell(r.kind),
    cell(r.externalId, { code: true }),
    cell(r.source || ""),
    cell(relative(r.updatedAt), { title: r.updatedAt }),
    actionsCell(button(trashIcon(), `Delete record ${r.title}`, () => deleteRecord(r), "danger")),
  ]);
  $("records-empty").textContent = kind ? "No records of this kind." : "No records yet.";
  $("records-more").hidden = !recordsState.cursor;
}

async function deleteRecord(r) {
  if (!confirm(`Delete the ${r.kind} "${r.title}" (${r.externalId})? Agents stop seeing it at once; an integration that sends it again brings it back.`)) return;
  await guarded(async () => {
    await api("POST", "/api/settings/knowledge/records/delete", { records: [{ kind: r.kind, externalId: r.externalId }] });
    await Promise.all([loadKnowledge(), lastSearch ? runSearch(lastSearch) : null]);
  });
}

// ---- search: what an agent would see ----

function search(event) {
  event.preventDefault();
  const query = { q: $("search-q").value, kind: $("search-kind").value };
  guarded(() => runSearch(query));
}

// No `limit`: the route's default is what a chat turn retrieves.
async function runSearch(query) {
  const params = new URLSearchParams({ q: query.q });
  if (query.kind) params.set("kind", query.kind);
  const { results } = await api("GET", `/api/settings/knowledge/search?${params}`);
  lastSearch = query;
  $("search-status").textContent = results.length
    ? `An agent would be given ${results.length === 1 ? "this record" : `these ${results.length} records`}, in this order.`
    : "No records match: an agent would answer without workspace data.";
  $("search-results").replaceChildren(...results.map(searchResult));
}

function searchResult(r) {
  const li = document.createElement("li");
  li.className = "result";
  const head = document.createElement("div");
  head.className = "result-head";
  const title = recordTitle(r, "strong");
  const kind = document.createElement("span");
  kind.className = "badge";
  kind.textContent = r.kind;
  const id = document.createElement("code");
  id.textContent = r.externalId;
  const score = document.createElement("span");
  score.className = "muted";
  score.textContent = typeof r.score === "number" ? `score ${r.score.toFixed(2)}` : "";
  head.append(title, kind, id, score, button(trashIcon(), `Delete record ${r.title}`, () => deleteRecord(r), "danger"));
  li.appendChild(head);
  if (r.snippet) {
    const snippet = document.createElement("p");
    snippet.className = "snippet";
    snippet.textContent = r.snippet;
    li.appendChild(snippet);
  }
  return li;
}

// ---- CSV import ----

class CsvError extends Error {}

// RFC 4180: fields separated by commas; a field in double quotes may hold commas, line breaks
// and "" for a quote. Records end with CRLF, LF or a lone CR (spreadsheets write all three); a
// leading byte order mark is dropped. A stray quote inside an unquoted field is kept as text,
// as spreadsheets do. Returns [{line, cells}], `line` being the line of the file the record
// starts on, so an error points where a text editor shows the row.
function parseCsv(text) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const rows = [];
  let cells = [];
  let field = "";
  let fieldStart = true; // nothing read yet for this field: a quote here opens a quoted field
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let quoteLine = 0;
  const endField = () => {
    cells.push(field);
    field = "";
    fieldStart = true;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else if (c === "\r" || c === "\n") {
        // One "\n" for any line break, so the same file saved on Windows or elsewhere imports
        // the same text (and comes back `unchanged` rather than `updated`).
        if (c === "\r" && text[i + 1] === "\n") i++;
        field += "\n";
        line++;
      } else {
        field += c;
      }
    } else if (c === '"' && fieldStart) {
      quoted = true;
      fieldStart = false;
      quoteLine = line;
    } else if (c === ",") {
      endField();
    } else if (c === "\r" || c === "\n") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      endField();
      rows.push({ line: rowLine, cells });
      cells = [];
      line++;
      rowLine = line;
    } else {
      field += c;
      fieldStart = false;
    }
  }
  if (quoted) throw new CsvError(`The quoted field that starts on line ${quoteLine} is never closed.`);
  // The last record may end without a line break.
  if (!fieldStart || cells.length > 0) {
    endField();
    rows.push({ line: rowLine, cells });
  }
  return rows;
}

// Header names, compared without case, spaces, "_" or "-": `externalId`, `external_id` and
// `External ID` are the same column.
const normalize = (name) => name.toLowerCase().replace(/[\s_-]+/g, "");
const FIELDS = ["kind", "externalId", "title", "body", "url", "source", "accountName", "amount", "currency", "stage", "status", "closeDate", "owner", "sourceUpdatedAt"];
// A Map, not an object: a column named "constructor" must not find Object's.
const COLUMN_NAMES = new Map([
  ...FIELDS.map((f) => [normalize(f), f]),
  ["name", "title"],
  ["description", "body"],
  ["content", "body"],
  ["link", "url"],
  ["account", "accountName"],
  ["company", "accountName"],
  ["updatedat", "sourceUpdatedAt"],
]);

// Which column holds which field: [{index, field}] or [{index, property}] for
// `properties.<name>` columns. Unknown columns are left out; a field named twice is an error,
// since either choice could silently import the wrong one.
function mapColumns(header, defaultKind) {
  const columns = [];
  const seen = new Map();
  header.forEach((raw, index) => {
    const name = raw.trim();
    const prop = /^properties\.(.+)$/i.exec(name);
    const column = prop ? { index, property: prop[1].trim() } : { index, field: COLUMN_NAMES.get(normalize(name)) };
    if (!column.property && !column.field) return;
    const key = column.property ? `properties.${column.property}` : column.field;
    if (seen.has(key)) throw new CsvError(`Columns ${seen.get(key) + 1} and ${index + 1} are both ${key}; keep one of them.`);
    seen.set(key, index);
    columns.push(column);
  });
  const missing = ["externalId", "title"].filter((f) => !seen.has(f));
  if (!seen.has("kind") && !defaultKind) missing.unshift("kind");
  if (missing.length) {
    const hint = missing.includes("kind") ? " (or choose a kind for rows without one)" : "";
    throw new CsvError(`The first row must name the columns; missing: ${missing.join(", ")}${hint}.`);
  }
  return columns;
}

// Plain numbers, optionally with thousands separated by commas ("1,250.50"). Anything else
// ("1,5", "$100") is an error rather than a guess.
function parseAmount(text) {
  const plain = /^\d{1,3}(,\d{3})+(\.\d+)?$/.test(text) ? text.replace(/,/g, "") : text;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(plain)) return null;
  const n = Number(plain);
  return Number.isFinite(n) ? n : null;
}

// One CSV row as a record: empty cells are absent; text is trimmed but for `body`; `kind` and
// `status` are lowercased. Returns {record, problems}: the rules the page can check itself
// (required fields, a known kind, a numeric amount), so a row that cannot be valid does not
// cost its whole batch; the API checks everything else.
function toRecord(cells, columns, defaultKind) {
  const record = {};
  const problems = [];
  for (const column of columns) {
    const raw = cells[column.index];
    if (raw === undefined || raw.trim() === "") continue;
    const value = column.field === "body" ? raw : raw.trim();
    if (column.property) {
      // Kept as text: "02134" is a postal code, not a number. No prototype, so a column
      // named properties.__proto__ is an ordinary key.
      record.properties = record.properties || Object.create(null);
      record.properties[column.property] = value;
    } else if (column.field === "amount") {
      const n = parseAmount(value);
      if (n === null) problems.push("amount must be a number, such as 1250 or 1,250.50");
      else record.amount = n;
    } else if (column.field === "kind" || column.field === "status") {
      record[column.field] = value.toLowerCase();
    } else {
      record[column.field] = value;
    }
  }
  if (!record.kind && defaultKind) record.kind = defaultKind;
  if (!record.kind) problems.unshift("kind is missing");
  else if (!KINDS.includes(record.kind)) problems.unshift(`kind must be one of ${KINDS.join(", ")}`);
  if (!record.externalId) problems.push("externalId is missing");
  if (!record.title) problems.push("title is missing");
  return { record, problems };
}

const BATCH_RECORDS = 500;
// The route takes at most 1 MiB a request; stay under it with room for the envelope, so
// long bodies make smaller batches instead of a 413.
const BATCH_BYTES = 1000 * 1000;

// Consecutive rows in batches of at most BATCH_RECORDS records and BATCH_BYTES of JSON.
function batches(rows) {
  const encoder = new TextEncoder();
  const out = [];
  let current = [];
  let bytes = 0;
  for (const row of rows) {
    const size = encoder.encode(JSON.stringify(row.record)).length + 1;
    if (current.length && (current.length === BATCH_RECORDS || bytes + size > BATCH_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(row);
    bytes += size;
  }
  if (current.length) out.push(current);
  return out;
}

// What one import run shows: the progress bar, "n of N", the rows not imported and the summary.
class ImportView {
  constructor(total) {
    this.total = total;
    this.done = 0;
    this.errors = [];
    this.counts = { created: 0, updated: 0, unchanged: 0, failed: 0 };
    $("import-run").hidden = false;
    $("import-summary").hidden = true;
    $("import-progress").max = Math.max(total, 1);
    this.progress(0);
    this.renderErrors();
  }

  progress(rows) {
    this.done += rows;
    $("import-progress").value = this.done;
    $("import-count").textContent = `${this.done.toLocaleString()} of ${this.total.toLocaleString()} rows processed`;
  }

  // `last` for an error about a range of rows (a batch), which sorts after the rows' own
  // errors: first what is wrong, then what else that cost.
  fail(line, text, last) {
    const range = last !== undefined && last !== line;
    this.errors.push({ order: range ? last : line, text, where: range ? `lines ${line}–${last}` : `line ${line}` });
  }

  // Sorted by line, as the file reads; a huge list is cut short, the count stays exact.
  renderErrors() {
    const shown = 200;
    const sorted = [...this.errors].sort((a, b) => a.order - b.order);
    const items = sorted.slice(0, shown).map((e) => {
      const li = document.createElement("li");
      li.textContent = `${e.where}: ${e.text}`;
      return li;
    });
    if (sorted.length > shown) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = `… and ${(sorted.length - shown).toLocaleString()} more`;
      items.push(li);
    }
    $("import-errors").replaceChildren(...items);
    $("import-errors-wrap").hidden = this.errors.length === 0;
  }

  finish(stopped) {
    const c = this.counts;
    const n = (x) => x.toLocaleString();
    const summary = $("import-summary");
    summary.textContent =
      `${stopped ? `Import stopped: ${stopped}` : "Import finished"}. ` +
      `${n(c.created)} created, ${n(c.updated)} updated, ${n(c.unchanged)} unchanged, ${n(c.failed)} not imported.`;
    summary.classList.toggle("error", Boolean(stopped) || c.failed > 0);
    summary.hidden = false;
  }
}

async function importCsv(event) {
  event.preventDefault();
  const file = $("import-file").files[0];
  if (!file) return;
  const defaultKind = $("import-kind").value;
  const problem = $("import-error");
  problem.hidden = true;
  showError("");

  let rows;
  try {
    const parsed = parseCsv(await file.text());
    if (parsed.length === 0) throw new CsvError("The file is empty.");
    const columns = mapColumns(parsed[0].cells, defaultKind);
    // Rows with nothing in them (blank lines, ",,,," from spreadsheets) are not records.
    rows = parsed
      .slice(1)
      .filter((row) => row.cells.some((c) => c.trim() !== ""))
      .map((row) => ({ line: row.line, ...toRecord(row.cells, columns, defaultKind) }));
    if (rows.length === 0) throw new CsvError("The file has a header row but no records.");
  } catch (e) {
    problem.textContent = e instanceof CsvError ? e.message : `The file could not be read: ${e.message}`;
    problem.hidden = false;
    $("import-run").hidden = true;
    return;
  }

  setImporting(true);
  const view = new ImportView(rows.length);
  try {
    await guarded(() => sendRows(rows, view));
  } finally {
    setImporting(false);
  }
  if (token()) await guarded(loadKnowledge);
}

// The rules the page checks before sending, per row (see toRecord), and a (kind, externalId)
// the file already had: the API would refuse it within a batch, and across batches the later
// row would silently overwrite the earlier one.
function precheck(rows) {
  const first = new Map();
  for (const row of rows) {
    if (row.problems.length) continue;
    const key = `${row.record.kind}\u0000${row.record.externalId}`;
    if (first.has(key)) row.problems.push(`kind and externalId repeat those of line ${first.get(key)}`);
    else first.set(key, row.line);
  }
}

async function sendRows(rows, view) {
  precheck(rows);
  const invalid = rows.filter((r) => r.problems.length);
  for (const row of invalid) for (const text of row.problems) view.fail(row.line, text);
  view.counts.failed += invalid.length;
  view.progress(invalid.length);
  view.renderErrors();

  const todo = batches(rows.filter((r) => !r.problems.length));
  for (let b = 0; b < todo.length; b++) {
    const batch = todo[b];
    try {
      const { results } = await api("PUT", "/api/settings/knowledge/records", { records: batch.map((r) => r.record) });
      for (const r of results) view.counts[r.status] = (view.counts[r.status] || 0) + 1;
    } catch (e) {
      if (e.status === 401) throw e;
      if (e.status !== 400 && e.status !== 413) {
        // Not about these rows (the record cap, the service unreachable): later batches would
        // fail the same way. Imported rows stay; importing the file again finishes the job, as
        // rows already imported come back `unchanged`.
        const left = todo.slice(b).flat();
        view.counts.failed += left.length;
        view.fail(left[0].line, `${countRows(left.length)} not imported: ${e.message}`, left[left.length - 1].line);
        view.renderErrors();
        return view.finish(e.message);
      }
      rejectBatch(batch, e.body, view);
    }
    view.progress(batch.length);
    view.renderErrors();
  }
  view.finish(null);
}

// A batch answered 400 wrote nothing: each error goes to its row's line, and the batch's other
// rows are reported as not imported either, so nothing is silently missing.
function rejectBatch(batch, body, view) {
  const first = batch[0].line;
  const last = batch[batch.length - 1].line;
  const errors = (body && body.details && body.details.errors) || [];
  const flagged = new Set();
  for (const err of errors) {
    const row = Number.isInteger(err.index) ? batch[err.index] : undefined;
    if (row) {
      flagged.add(err.index);
      view.fail(row.line, `${err.field} ${err.rule}`);
    } else {
      // About the request as a whole (index null).
      view.fail(first, `${err.field} ${err.rule}`, last);
    }
  }
  const others = batch.length - flagged.size;
  if (flagged.size === 0) {
    view.fail(first, `${countRows(batch.length)} not imported: ${(body && body.error) || "the request was refused"}`, last);
  } else if (others > 0) {
    const were = others === 1 ? "was" : "were";
    view.fail(first, `${countRows(others)} without errors ${were} not imported either, as a batch with any error writes nothing; fix the errors and import the file again`, last);
  }
  view.counts.failed += batch.length;
}

function countRows(n) {
  return `${n.toLocaleString()} ${n === 1 ? "row" : "rows"}`;
}

function setImporting(on) {
  $("import-submit").disabled = on;
  $("import-file").disabled = on;
  $("import-kind").disabled = on;
  $("import-submit").textContent = on ? "Importing…" : "Import";
}

// ---- audit log ------------------------------------------------------------------------------

const ACTIONS = {
  "api_key.created": "Created an API key",
  "api_key.deleted": "Deleted an API key",
  "api_key.updated": "Edited an API key",
  "api_key.rolled": "Rolled an API key",
  "agent.created": "Created an agent",
  "agent.updated": "Edited an agent",
  "agent.deleted": "Deleted an agent",
  "knowledge.upserted": "Imported knowledge records",
  "knowledge.deleted": "Deleted knowledge records",
};

async function loadAudit() {
  const [{ entries }, { agents }] = await Promise.all([api("GET", "/api/settings/audit-log?limit=100"), api("GET", "/api/settings/agents")]);
  const agentNames = new Map(agents.map((a) => [a.id, a.name]));
  renderTable("audit-table", "audit-empty", entries, (e) => [
    cell(relative(e.createdAt), { title: e.createdAt }),
    cell(e.actor),
    cell(ACTIONS[e.action] || e.action),
    targetCell(e),
    cell(auditDetails(e, agentNames), { title: e.details ? JSON.stringify(e.details) : "" }),
  ]);
}

const CHANGE_NAMES = { name: "name", rateLimitPerMinute: "rate limit", expiresAt: "expiry", allowedAgentIds: "agents" };

// A key setting's value in words, as the keys table shows it.
function settingText(field, value, agentNames) {
  if (field === "rateLimitPerMinute") return value == null ? "default" : `${value}/min`;
  if (field === "expiresAt") return value == null ? "never" : date(value);
  if (field === "allowedAgentIds") return value == null ? "all" : agentsLabel(value, agentNames);
  return typeof value === "string" ? `“${value}”` : JSON.stringify(value);
}

const GRACE_NAMES = { 0: "no grace period", 3600: "old key works 1 more hour", 86400: "old key works 24 more hours", 604800: "old key works 7 more days" };

// What changed, in one line; the full details are the cell's title.
function auditDetails(e, agentNames) {
  const d = e.details;
  if (!d) return "";
  if (e.action === "api_key.updated" && d.changes) {
    return Object.entries(d.changes)
      .map(([field, c]) => `${CHANGE_NAMES[field] || field}: ${settingText(field, c.from, agentNames)} → ${settingText(field, c.to, agentNames)}`)
      .join("; ");
  }
  if (e.action === "api_key.rolled" && typeof d.gracePeriodSeconds === "number") {
    const s = d.gracePeriodSeconds;
    const grace = GRACE_NAMES[s] || `old key works ${duration(s * 1000)} more`;
    // The old key's own expiry may come before the grace period's end.
    return d.previousExpiresAt && s > 0 ? `${grace} (until ${date(d.previousExpiresAt)})` : grace;
  }
  return JSON.stringify(d);
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
  $("roll-form").addEventListener("submit", submitRoll);
  $("roll-cancel").addEventListener("click", closeRoll);
  $("roll-dialog").addEventListener("cancel", () => (rolling = null));
  $("edit-form").addEventListener("submit", submitEdit);
  $("edit-cancel").addEventListener("click", closeEdit);
  $("edit-dialog").addEventListener("cancel", () => (editing = null));
  $("edit-all-agents").addEventListener("change", () => syncAgentChoice("edit"));
  $("key-all-agents").addEventListener("change", () => syncAgentChoice("key"));
  $("usage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(loadUsage);
  });
  $("usage-period").addEventListener("change", () => guarded(loadUsage));
  for (const id of ["usage-from", "usage-to"]) {
    $(id).addEventListener("change", () => {
      $("usage-period").value = "custom";
      guarded(loadUsage);
    });
  }
  $("usage-key").addEventListener("change", () => guarded(loadUsage));
  $("agent-form").addEventListener("submit", saveAgent);
  $("agent-cancel").addEventListener("click", resetAgentForm);
  $("agent-knowledge").addEventListener("change", syncKnowledgeKinds);
  $("search-form").addEventListener("submit", search);
  $("import-form").addEventListener("submit", importCsv);
  $("records-kind").addEventListener("change", () => guarded(() => loadRecords(true)));
  $("records-more").addEventListener("click", () => guarded(() => loadRecords(false)));
  if (token()) showApp();
  else $("admin-token").focus();
});
