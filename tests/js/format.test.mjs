// Unit tests of the settings page's formatting (assets/settings/js/format.js), its readings of
// keys and agents (model.js) and of insights (insights.js). Locale-dependent text is compared
// with what Intl gives for the same locale, so the tests pass in any.
import { test } from "node:test";
import assert from "node:assert/strict";
import { count, counted, dayLabel, dayMs, duration, isoDay, localInput, relative } from "../../assets/settings/js/format.js";
import { agentsLabel, expired, fallbackTargets, keyLabel, knowledgeLabel } from "../../assets/settings/js/model.js";
import {
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
} from "../../assets/settings/js/insights.js";

const NOW = Date.parse("2026-03-30T12:00:00Z");
const ago = (ms) => new Date(NOW - ms).toISOString();
const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

test("relative times, past and future, in the largest whole unit", () => {
  assert.equal(relative(null, NOW), "Never");
  assert.equal(relative(ago(4000), NOW), "just now");
  assert.equal(relative(ago(-4000), NOW), "just now");
  assert.equal(relative(ago(45_000), NOW), rtf.format(-45, "second"));
  assert.equal(relative(ago(3 * 3600_000), NOW), rtf.format(-3, "hour"));
  assert.equal(relative(ago(-2 * 86400_000), NOW), rtf.format(2, "day"));
  assert.equal(relative(ago(400 * 86400_000), NOW), rtf.format(-1, "year"));
  // The default is the clock's now.
  assert.equal(relative(new Date().toISOString()), "just now");
});

test("counts, words and durations", () => {
  assert.equal(count(null), "0");
  assert.equal(count(1234567), (1234567).toLocaleString());
  assert.equal(counted(1, "error"), "1 error");
  assert.equal(counted(0, "error"), "0 errors");
  assert.equal(counted(2, "entry", "entries"), "2 entries");
  assert.equal(duration(undefined), "0 ms");
  assert.equal(duration(480.4), "480 ms");
  assert.equal(duration(1500), "1.5 s");
  assert.equal(duration(90_000), "1 min 30 s");
  assert.equal(duration(3_726_000), "1 h 2 min");
});

test("UTC days and local datetime inputs", () => {
  assert.equal(isoDay(dayMs("2026-02-28") + 86400_000), "2026-03-01");
  assert.equal(dayMs("2026-03-30"), Date.parse("2026-03-30T00:00:00Z"));
  // A UTC day is labelled as that day whatever the local time zone.
  assert.equal(dayLabel("2026-03-01", { month: "short", day: "numeric" }), new Date(Date.UTC(2026, 2, 1)).toLocaleDateString(undefined, { timeZone: "UTC", month: "short", day: "numeric" }));
  assert.equal(localInput(null), "");
  const d = new Date(2026, 0, 5, 7, 3);
  assert.equal(localInput(d.toISOString()), "2026-01-05T07:03");
});

test("keys and agents in words", () => {
  assert.equal(keyLabel({ name: "CI", prefix: "atv_ab12" }), "CI (atv_ab12…)");
  assert.equal(expired({ expiresAt: null }, NOW), false);
  assert.equal(expired({ expiresAt: ago(1) }, NOW), true);
  assert.equal(expired({ expiresAt: ago(-1) }, NOW), false);
  const names = new Map([["agt_1", "Renewal Risk"]]);
  assert.equal(agentsLabel(null, names), "All");
  assert.equal(agentsLabel([], names), "None");
  assert.equal(agentsLabel(["agt_1", "agt_9"], names), "Renewal Risk, agt_9 (deleted)");
  assert.equal(knowledgeLabel(undefined), "All");
  assert.equal(knowledgeLabel({ enabled: false, kinds: ["deal"] }), "Off");
  assert.equal(knowledgeLabel({ enabled: true, kinds: ["deal", "account"] }), "deal, account");
  assert.equal(knowledgeLabel({ enabled: true, kinds: ["deal", "account", "contact", "note", "feedback", "document"] }), "All");
  assert.deepEqual(fallbackTargets(" backup/gpt-4o-mini \n\nclaude/claude-3/haiku\n"), [
    { provider: "backup", model: "gpt-4o-mini" },
    { provider: "claude", model: "claude-3/haiku" },
  ]);
  assert.deepEqual(fallbackTargets(""), []);
  for (const bad of ["no-slash", "/model", "provider/", "a/1\nb/2\nc/3\nd/4"]) assert.equal(fallbackTargets(bad), null, bad);
});

test("insights in words: interval, status, agent, next refresh, tokens", () => {
  assert.deepEqual(REFRESH_CHOICES.map(([, text]) => text), ["5 min", "15 min", "1 h", "6 h", "24 h", "7 days"]);
  assert.deepEqual(REFRESH_CHOICES.map(([s]) => refreshText(s)), ["5 min", "15 min", "1 h", "6 h", "24 h", "7 days"]);
  assert.equal(refreshText(7200), "2 h");
  assert.equal(refreshText(172_800), "2 days");
  assert.equal(refreshText(600), "10 min");
  assert.equal(refreshText(301), "301 s");
  assert.equal(statusText("fresh"), "Fresh");
  assert.equal(statusText("stale"), "Stale");
  assert.equal(statusText("pending"), "Pending");
  assert.equal(errorText(null), "");
  assert.equal(errorText({ code: "llm_timeout", at: ago(0) }), "Last refresh failed (llm_timeout)");
  const names = new Map([["agt_1", "Churn Analyst"]]);
  assert.equal(agentText(null, names), "Default assistant");
  assert.equal(agentText("agt_1", names), "Churn Analyst");
  assert.equal(agentText("agt_2", names), "agt_2 (deleted)");
  assert.equal(nextRefreshText(null, NOW), "Not scheduled");
  assert.equal(nextRefreshText(ago(5000), NOW), "Due now");
  assert.equal(nextRefreshText(ago(-6 * 3600_000), NOW), rtf.format(6, "hour"));
  assert.equal(tokensText(null), "—");
  assert.equal(tokensText({ promptTokens: 120, completionTokens: 30 }), "150");
  assert.equal(tokensTitle({ promptTokens: 120, completionTokens: 30 }), "120 prompt + 30 completion tokens");
});

test("an insight's fields as the API takes them, and only what an edit changed", () => {
  const values = { name: "  Renewal risk ", prompt: "Which renewals are at risk?\n", agentId: "", refreshSeconds: "21600" };
  assert.deepEqual(insightInput(values), { name: "Renewal risk", prompt: "Which renewals are at risk?\n", agentId: null, refreshSeconds: 21600 });
  const saved = { id: "ins_1", name: "Renewal risk", prompt: "Which renewals are at risk?\n", agentId: null, refreshSeconds: 21600 };
  assert.deepEqual(insightChanges(saved, values), {});
  assert.deepEqual(insightChanges(saved, { ...values, name: "Renewal risk (weekly)", refreshSeconds: "604800" }), { name: "Renewal risk (weekly)", refreshSeconds: 604800 });
  assert.deepEqual(insightChanges(saved, { ...values, agentId: "agt_1" }), { agentId: "agt_1" });
  assert.deepEqual(insightChanges({ ...saved, agentId: "agt_1" }, values), { agentId: null }, "back to the default assistant");
  assert.deepEqual(insightChanges(saved, { ...values, prompt: "Which renewals are at risk?" }), { prompt: "Which renewals are at risk?" });
});
