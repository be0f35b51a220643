// The knowledge tab: counts per kind, search as an agent would, the CSV import and the list
// of records.

import { api, token } from "./api.js";
import { CsvError, batches, csvRows, precheck } from "./csv.js";
import { $, actionsCell, button, cell, recordTitle, renderTable, trashIcon } from "./dom.js";
import { relative } from "./format.js";
import { KINDS } from "./model.js";
import { guarded, showError } from "./session.js";

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
    rows = csvRows(await file.text(), defaultKind);
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

function wire() {
  $("search-form").addEventListener("submit", search);
  $("import-form").addEventListener("submit", importCsv);
  $("records-kind").addEventListener("change", () => guarded(() => loadRecords(true)));
  $("records-more").addEventListener("click", () => guarded(() => loadRecords(false)));
}

export const knowledgeTab = { name: "knowledge", load: loadKnowledge, wire, reset: clearKnowledge };
