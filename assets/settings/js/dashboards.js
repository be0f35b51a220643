// The dashboards tab: insights (saved questions an agent answers ahead of time), their answers
// and sources, and the snippets that embed one in a customer's page.

import { api, token } from "./api.js";
import { $, actionsCell, button, cell, copyField, recordTitle, renderTable, trashIcon } from "./dom.js";
import { date, relative } from "./format.js";
import {
  DEFAULT_REFRESH_SECONDS,
  REFRESH_CHOICES,
  agentText,
  errorText,
  insightChanges,
  insightInput,
  nextRefreshText,
  refreshText,
  statusText,
  tokensText,
  tokensTitle,
} from "./insights.js";
import { guarded, inDialog } from "./session.js";
import { embedSnippets } from "./snippets.js";

// The insights and agents as last loaded, the insights being generated now (their buttons
// show it, also across reloads), and the generation of the data: what a request answers
// after a sign out is dropped.
const state = { insights: [], agents: [], refreshing: new Set(), generation: 0 };
const path = (id) => `/api/settings/insights/${encodeURIComponent(id)}`;

async function loadDashboards() {
  const generation = state.generation;
  const [{ insights }, { agents }] = await Promise.all([api("GET", "/api/settings/insights"), api("GET", "/api/settings/agents")]);
  if (generation !== state.generation) return;
  state.insights = insights;
  state.agents = agents;
  renderInsights();
}

function renderInsights() {
  const names = new Map(state.agents.map((a) => [a.id, a.name]));
  renderTable("insights-table", "insights-empty", state.insights, (i) => [
    nameCell(i),
    cell(agentText(i.agentId, names)),
    statusCell(i),
    cell(relative(i.generatedAt), { title: i.generatedAt ? date(i.generatedAt) : "" }),
    cell(nextRefreshText(i.nextRefreshAt), { title: i.nextRefreshAt ? `${date(i.nextRefreshAt)}, every ${refreshText(i.refreshSeconds)}` : "" }),
    cell(tokensText(i.usage), { num: true, title: tokensTitle(i.usage) }),
    actionsCell(
      i.answer == null ? null : button("View", `View answer of ${i.name}`, () => openAnswer(i)),
      button("Embed", `Embed insight ${i.name}`, () => openEmbed(i)),
      refreshButton(i),
      button("Edit", `Edit insight ${i.name}`, () => openInsightDialog(i)),
      button(trashIcon(), `Delete insight ${i.name}`, () => deleteInsight(i), "danger"),
    ),
  ]);
}

function nameCell(i) {
  const td = cell(i.name, { title: i.prompt });
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = `Every ${refreshText(i.refreshSeconds)}`;
  td.append(note);
  return td;
}

function statusCell(i) {
  const td = cell(state.refreshing.has(i.id) ? "Generating…" : statusText(i.status));
  if (i.lastError) {
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = errorText(i.lastError);
    note.title = i.lastError.at ? date(i.lastError.at) : "";
    td.append(note);
  }
  return td;
}

// While an insight is generated, its button says so and cannot be pressed again.
function refreshButton(i) {
  const busy = state.refreshing.has(i.id);
  const b = button(busy ? "Refreshing…" : "Refresh", `Refresh insight ${i.name}`, () => refreshInsight(i));
  b.dataset.refresh = i.id;
  b.disabled = busy;
  if (busy) b.setAttribute("aria-busy", "true");
  return b;
}

// Generates the answer now; the route answers once it is done, which can take seconds.
async function refreshInsight(i) {
  const generation = state.generation;
  state.refreshing.add(i.id);
  renderInsights();
  try {
    await guarded(async () => {
      const fresh = await api("POST", `${path(i.id)}/refresh`);
      if (generation === state.generation) state.insights = state.insights.map((x) => (x.id === fresh.id ? fresh : x));
    });
  } finally {
    state.refreshing.delete(i.id);
  }
  if (generation !== state.generation) return;
  renderInsights();
  // The pressed button was disabled, and focus went with it: back to the row's new one.
  if (document.activeElement === document.body) {
    const again = [...document.querySelectorAll("#insights-table button[data-refresh]")].find((b) => b.dataset.refresh === i.id);
    if (again) again.focus();
  }
}

async function deleteInsight(i) {
  if (!confirm(`Delete the insight "${i.name}"? Pages that embed it stop showing its answer.`)) return;
  await guarded(async () => {
    await api("DELETE", path(i.id));
    await loadDashboards();
  });
}

// ---- create and edit ----

// The insight the dialog edits; null when it creates one.
let editing = null;

function openInsightDialog(i) {
  editing = i || null;
  // The agents as last loaded; an agent deleted since the insight was saved stays chosen.
  const agents = state.agents.map((a) => new Option(a.name, a.id));
  if (i && i.agentId && !state.agents.some((a) => a.id === i.agentId)) agents.push(new Option(`${i.agentId} (deleted)`, i.agentId));
  $("insight-agent").replaceChildren(new Option("Default assistant", ""), ...agents);
  // An interval set through the API that is not among the choices is offered as it is.
  const refresh = i ? i.refreshSeconds : DEFAULT_REFRESH_SECONDS;
  const choices = REFRESH_CHOICES.some(([s]) => s === refresh) ? REFRESH_CHOICES : [...REFRESH_CHOICES, [refresh, refreshText(refresh)]].sort((a, b) => a[0] - b[0]);
  $("insight-refresh").replaceChildren(...choices.map(([s, text]) => new Option(text, String(s))));
  $("insight-name").value = i ? i.name : "";
  $("insight-prompt").value = i ? i.prompt : "";
  $("insight-agent").value = (i && i.agentId) || "";
  $("insight-refresh").value = String(refresh);
  $("insight-title").textContent = i ? `Edit insight ${i.name}` : "New insight";
  $("insight-submit").textContent = i ? "Save insight" : "Create insight";
  $("insight-error").hidden = true;
  $("insight-dialog").showModal();
  $("insight-name").focus();
}

function dialogValues() {
  return {
    name: $("insight-name").value,
    prompt: $("insight-prompt").value,
    agentId: $("insight-agent").value,
    refreshSeconds: $("insight-refresh").value,
  };
}

async function submitInsight(event) {
  event.preventDefault();
  const i = editing;
  const values = dialogValues();
  const changes = i ? insightChanges(i, values) : null;
  if (changes && Object.keys(changes).length === 0) return closeInsightDialog();
  $("insight-submit").disabled = true;
  try {
    await inDialog("insight-error", async () => {
      if (i) await api("PATCH", path(i.id), changes);
      else await api("POST", "/api/settings/insights", insightInput(values));
      closeInsightDialog();
    });
  } finally {
    $("insight-submit").disabled = false;
  }
  if (token() && !$("insight-dialog").open) await guarded(loadDashboards);
}

function closeInsightDialog() {
  editing = null;
  $("insight-dialog").close();
}

// ---- the answer ----

function openAnswer(i) {
  const names = new Map(state.agents.map((a) => [a.id, a.name]));
  $("answer-title").textContent = `Answer: ${i.name}`;
  const meta = [statusText(i.status), `generated ${relative(i.generatedAt).toLowerCase()}`, `by ${agentText(i.agentId, names)}`];
  if (i.model) meta.push(`with ${i.model}`);
  $("answer-meta").textContent = meta.join(", ");
  $("answer-meta").title = i.generatedAt ? date(i.generatedAt) : "";
  $("answer-text").textContent = i.answer || "";
  const sources = i.sources || [];
  $("answer-sources").replaceChildren(...sources.map(sourceItem));
  $("answer-no-sources").hidden = sources.length > 0;
  $("answer-dialog").showModal();
}

function sourceItem(s) {
  const li = document.createElement("li");
  li.className = "result";
  const head = document.createElement("div");
  head.className = "result-head";
  const kind = document.createElement("span");
  kind.className = "badge";
  kind.textContent = s.kind;
  const id = document.createElement("code");
  id.textContent = s.externalId;
  head.append(recordTitle(s, "strong"), kind, id);
  if (s.cited) {
    const cited = document.createElement("span");
    cited.className = "badge";
    cited.textContent = "cited";
    head.append(cited);
  }
  li.append(head);
  if (s.snippet) {
    const snippet = document.createElement("p");
    snippet.className = "snippet";
    snippet.textContent = s.snippet;
    li.append(snippet);
  }
  return li;
}

// ---- embedding ----

// The snippets of the insight the embed dialog shows.
let snippets = null;

function openEmbed(i) {
  snippets = embedSnippets(location.origin, i.id);
  $("embed-title").textContent = `Embed ${i.name}`;
  const flavour = $("embed-flavour");
  const chosen = flavour.value || snippets.server[0].id;
  flavour.replaceChildren(...snippets.server.map((s) => new Option(s.label, s.id)));
  flavour.value = chosen;
  showServerSnippet();
  setCode($("embed-html"), snippets.html);
  $("embed-copy-status").textContent = "";
  $("embed-dialog").showModal();
}

function showServerSnippet() {
  const snippet = snippets.server.find((s) => s.id === $("embed-flavour").value) || snippets.server[0];
  setCode($("embed-server"), snippet.text);
  $("embed-copy-status").textContent = "";
}

function setCode(area, text) {
  area.value = text;
  area.rows = text.split("\n").length;
}

function closeEmbed() {
  snippets = null;
  $("embed-dialog").close();
}

function wire() {
  $("insight-new").addEventListener("click", () => openInsightDialog(null));
  $("insight-form").addEventListener("submit", submitInsight);
  $("insight-cancel").addEventListener("click", closeInsightDialog);
  $("insight-dialog").addEventListener("cancel", () => (editing = null));
  $("answer-close").addEventListener("click", () => $("answer-dialog").close());
  $("embed-flavour").addEventListener("change", showServerSnippet);
  $("embed-copy-server").addEventListener("click", () => copyField($("embed-server"), $("embed-copy-status"), "the code"));
  $("embed-copy-html").addEventListener("click", () => copyField($("embed-html"), $("embed-copy-status"), "the HTML"));
  $("embed-done").addEventListener("click", closeEmbed);
  $("embed-dialog").addEventListener("cancel", () => (snippets = null));
}

// The insights are of the workspace signed out of.
function reset() {
  state.generation++;
  state.insights = [];
  state.agents = [];
  state.refreshing.clear();
  editing = null;
  snippets = null;
  $("insights-table").tBodies[0].replaceChildren();
}

export const dashboardsTab = { name: "dashboards", load: loadDashboards, wire, reset };
