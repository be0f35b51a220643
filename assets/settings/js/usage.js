// The usage tab: the period and key filter, the chart and the table per key.

import { api } from "./api.js";
import { usageChart, usageSummary } from "./chart.js";
import { $, cell, renderTable, svgEl } from "./dom.js";
import { DAY_MS, compact, count, dayLabel, dayMs, duration, isoDay } from "./format.js";
import { guarded } from "./session.js";

const MAX_DAYS = 366;
// The keys the filter offers, by id, as usage replies named them (deleted ones included, and
// kept while another key is shown), and the generation of the latest load: the reply of an
// older load that a newer one replaced is dropped.
const usageState = { keys: new Map(), generation: 0 };

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

// The chart as `usageChart` lays it out. The svg is one image for assistive technology,
// described by a summary; the table below holds the numbers.
function drawUsageChart(usage) {
  const { W, H, plot, requestsGrid, tokensGrid, ticks, bars, points, dots } = usageChart(usage);
  const who = usage.keyId ? usageKeyLabel(usageState.keys.get(usage.keyId) || { name: usage.keyId, prefix: "" }) : "all keys";
  const range = `${dayLabel(usage.from, { dateStyle: "medium" })} to ${dayLabel(usage.to, { dateStyle: "medium" })}`;
  const parts = [
    svgEl("title", { id: "usage-chart-title" }, `Requests and tokens per day, ${range}, ${who}`),
    svgEl("desc", { id: "usage-chart-desc" }, usageSummary(usage)),
  ];

  const grid = svgEl("g", { class: "gridlines", "aria-hidden": "true" });
  for (const g of requestsGrid) {
    grid.append(svgEl("line", { x1: plot.left, x2: plot.right, y1: g.y, y2: g.y }));
    grid.append(svgEl("text", { x: plot.left - 8, y: g.y + 4, "text-anchor": "end" }, compact.format(g.value)));
  }
  for (const g of tokensGrid) {
    grid.append(svgEl("line", { class: "tick", x1: plot.right, x2: plot.right + 5, y1: g.y, y2: g.y }));
    grid.append(svgEl("text", { x: plot.right + 8, y: g.y + 4 }, compact.format(g.value)));
  }
  for (const t of ticks) {
    grid.append(svgEl("line", { class: "tick", x1: t.x, x2: t.x, y1: plot.bottom, y2: plot.bottom + 5 }));
    grid.append(svgEl("text", { class: "day-label", x: t.x, y: plot.bottom + 19, "text-anchor": "middle" }, t.text));
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

  const barsGroup = svgEl("g", { class: "bars" });
  for (const bar of bars) {
    const group = svgEl("g", { class: "day", "data-date": bar.date, "data-requests": bar.requests, "data-tokens": bar.tokens });
    group.append(svgEl("title", {}, bar.title));
    for (const s of bar.segments) {
      group.append(svgEl("rect", { class: s.cls, x: bar.x.toFixed(2), y: s.y.toFixed(2), width: bar.width.toFixed(2), height: s.height.toFixed(2) }));
    }
    barsGroup.append(group);
  }
  parts.push(barsGroup);

  const coords = points.map((p) => [p.x.toFixed(2), p.y.toFixed(2)]);
  const line = svgEl("g", { class: "tokens" });
  line.append(svgEl("polyline", { class: "tokens-line", points: coords.map((c) => c.join(",")).join(" ") }));
  if (dots) for (const [cx, cy] of coords) line.append(svgEl("circle", { class: "tokens-dot", cx, cy, r: 2.5 }));
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
  $("usage-chart").replaceChildren(...parts);
}

function wire() {
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
}

export const usageTab = { name: "usage", load: loadUsage, wire, reset: clearUsage };
