// Settings page for workspace admins: API keys, agents, workspace knowledge and the audit log,
// through the settings JSON routes only. The admin token lives in sessionStorage (this tab
// only); a newly created key is held in the reveal dialog and nowhere else.
"use strict";

const TOKEN_KEY = "attive.adminToken";
// The kinds of workspace knowledge records, in the API's order.
const KINDS = ["deal", "account", "contact", "note", "feedback", "document"];
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
  clearKnowledge();
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

const TABS = ["keys", "agents", "knowledge", "audit"];
const LOADERS = { keys: loadKeys, agents: loadAgents, knowledge: loadKnowledge, audit: loadAudit };

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
    cell(knowledgeLabel(a.knowledge)),
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
  // Absent means the default: enabled, every kind (agents saved before knowledge existed).
  const k = a.knowledge || { enabled: true, kinds: null };
  $("agent-knowledge").checked = k.enabled !== false;
  for (const box of kindBoxes()) box.checked = !k.kinds || k.kinds.includes(box.value);
  syncKnowledgeKinds();
  $("agent-form-title").textContent = `Edit agent ${a.name}`;
  $("agent-submit").textContent = "Save changes";
  $("agent-cancel").hidden = false;
  $("agent-name").focus();
}

function resetAgentForm() {
  $("agent-form").reset();
  syncKnowledgeKinds();
  $("agent-id").value = "";
  $("agent-form-title").textContent = "Create an agent";
  $("agent-submit").textContent = "Create agent";
  $("agent-cancel").hidden = true;
}

async function saveAgent(event) {
  event.preventDefault();
  const form = event.target;
  const id = $("agent-id").value;
  const knowledge = knowledgeSetting();
  if (!knowledge) return showError("Choose at least one kind of record, or turn workspace knowledge off.");
  const payload = { name: form.name.value.trim(), instructions: form.instructions.value, model: form.model.value.trim() || null, knowledge };
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
// choice for when it is turned back on.
function syncKnowledgeKinds() {
  $("agent-kinds").disabled = !$("agent-knowledge").checked;
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
  "agent.created": "Created an agent",
  "agent.updated": "Edited an agent",
  "agent.deleted": "Deleted an agent",
  "knowledge.upserted": "Imported knowledge records",
  "knowledge.deleted": "Deleted knowledge records",
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
  $("agent-knowledge").addEventListener("change", syncKnowledgeKinds);
  $("search-form").addEventListener("submit", search);
  $("import-form").addEventListener("submit", importCsv);
  $("records-kind").addEventListener("change", () => guarded(() => loadRecords(true)));
  $("records-more").addEventListener("click", () => guarded(() => loadRecords(false)));
  if (token()) showApp();
  else $("admin-token").focus();
});
