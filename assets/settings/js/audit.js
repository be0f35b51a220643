// The audit log tab: recent activity, each entry with what changed in words.

import { api } from "./api.js";
import { cell, renderTable } from "./dom.js";
import { date, duration, relative } from "./format.js";
import { agentText, refreshText } from "./insights.js";
import { agentsLabel } from "./model.js";

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
  "insight.created": "Created an insight",
  "insight.updated": "Edited an insight",
  "insight.deleted": "Deleted an insight",
  "insight.refreshed": "Refreshed an insight",
  "workspace.updated": "Changed the workspace settings",
  "chats.expired": "Deleted chats past the retention",
  "chats.erased": "Erased a viewer's chats",
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

const INSIGHT_CHANGES = { name: "name", prompt: "prompt", agentId: "agent", refreshSeconds: "refresh" };

// An insight setting's value in words, as the dashboards tab shows it.
function insightSettingText(field, value, agentNames) {
  if (field === "agentId") return agentText(value, agentNames);
  if (field === "refreshSeconds") return typeof value === "number" ? `every ${refreshText(value)}` : JSON.stringify(value);
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
  if (e.action === "insight.updated" && d.changes) {
    // A prompt is long: the log only says that it changed.
    return Object.entries(d.changes)
      .map(([field, c]) => {
        const name = INSIGHT_CHANGES[field] || field;
        if (!c || typeof c !== "object") return `${name} ${c}`;
        return `${name}: ${insightSettingText(field, c.from, agentNames)} → ${insightSettingText(field, c.to, agentNames)}`;
      })
      .join("; ");
  }
  if ((e.action === "chats.expired" || e.action === "chats.erased") && typeof d.deletedChats === "number") {
    return `${d.deletedChats} chat${d.deletedChats === 1 ? "" : "s"} deleted`;
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

export const auditTab = { name: "audit", load: loadAudit };
