// The agents tab: the create/edit form (knowledge, tools, provider and fallbacks) and the table.

import { api } from "./api.js";
import { $, actionsCell, button, cell, renderTable } from "./dom.js";
import { relative } from "./format.js";
import { KINDS, TOOLS, fallbackTargets, knowledgeLabel } from "./model.js";
import { guarded, showError } from "./session.js";

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

function wire() {
  $("agent-form").addEventListener("submit", saveAgent);
  $("agent-cancel").addEventListener("click", resetAgentForm);
  $("agent-knowledge").addEventListener("change", syncKnowledgeKinds);
}

// An agent half edited belongs to the workspace signed out of.
export const agentsTab = { name: "agents", load: loadAgents, wire, reset: resetAgentForm };
