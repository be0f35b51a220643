// Insights as the dashboards tab shows and edits them, pure: no DOM, so Node can test it.

import { count, relative } from "./format.js";

// The refresh intervals offered, in seconds, with their names; the API takes 300 to 604800.
export const REFRESH_CHOICES = [
  [300, "5 min"],
  [900, "15 min"],
  [3600, "1 h"],
  [21600, "6 h"],
  [86400, "24 h"],
  [604800, "7 days"],
];
export const DEFAULT_REFRESH_SECONDS = 3600;

// An interval's name: one of the choices, or (set through the API) the largest whole unit.
export function refreshText(seconds) {
  const choice = REFRESH_CHOICES.find(([s]) => s === seconds);
  if (choice) return choice[1];
  if (seconds % 86400 === 0) return `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

const STATUS = { pending: "Pending", fresh: "Fresh", stale: "Stale" };

export function statusText(status) {
  return STATUS[status] || status;
}

// Why an answer may be behind, in words: the last generation failed.
export function errorText(lastError) {
  if (!lastError) return "";
  return `Last refresh failed (${lastError.code})`;
}

// The agent that answers, by name; an id no longer in the workspace shows as such.
export function agentText(agentId, names) {
  if (!agentId) return "Default assistant";
  return names.get(agentId) || `${agentId} (deleted)`;
}

// When the next generation is due; one already due is waiting for the scheduler.
export function nextRefreshText(iso, now = Date.now()) {
  if (!iso) return "Not scheduled";
  return Date.parse(iso) <= now ? "Due now" : relative(iso, now);
}

// The last generation's tokens, prompt and completion together; the split is the title.
export function tokensText(usage) {
  return usage ? count((usage.promptTokens || 0) + (usage.completionTokens || 0)) : "—";
}

export function tokensTitle(usage) {
  return usage ? `${count(usage.promptTokens)} prompt + ${count(usage.completionTokens)} completion tokens` : "Not generated yet";
}

// The dialog's fields as the API takes them: the name trimmed (the API trims it too), the
// prompt as written, no agent for the default assistant, the interval as a number.
export function insightInput(values) {
  return {
    name: values.name.trim(),
    prompt: values.prompt,
    agentId: values.agentId || null,
    refreshSeconds: Number(values.refreshSeconds),
  };
}

// Only what the admin changed: an edit of the prompt or the agent generates the answer again,
// and the API refuses an edit that changes nothing.
export function insightChanges(insight, values) {
  const input = insightInput(values);
  const changes = {};
  if (input.name !== insight.name) changes.name = input.name;
  if (input.prompt !== insight.prompt) changes.prompt = input.prompt;
  if (input.agentId !== (insight.agentId ?? null)) changes.agentId = input.agentId;
  if (input.refreshSeconds !== insight.refreshSeconds) changes.refreshSeconds = input.refreshSeconds;
  return changes;
}
