// The API keys tab: the create form, the table, and the reveal, roll and edit dialogs. A newly
// created key is held in the reveal dialog and nowhere else.

import { api, token } from "./api.js";
import { $, actionsCell, button, cell, copyField, renderTable, trashIcon } from "./dom.js";
import { count, date, localInput, relative } from "./format.js";
import { agentsLabel, expired, keyLabel } from "./model.js";
import { guarded, inDialog, showError } from "./session.js";

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

function wire() {
  $("key-form").addEventListener("submit", createKey);
  $("copy-key").addEventListener("click", () => copyField($("reveal-key"), $("copy-status"), "the key"));
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
}

// The revealed key leaves the page on sign out; so do the dialogs' subjects.
function reset() {
  $("reveal-key").value = "";
  rolling = null;
  editing = null;
}

export const keysTab = { name: "keys", load: loadKeys, wire, reset };
