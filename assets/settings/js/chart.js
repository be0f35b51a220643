// The usage chart's geometry and words, pure: no DOM, so Node can test it. The usage tab draws
// what `usageChart` lays out.

import { count, counted, dayLabel } from "./format.js";

// An axis from 0 to a round number at or above `max`, in at most four round steps, so
// gridlines fall on numbers read at a glance. Counts are whole: steps are at least 1.
export function niceAxis(max) {
  const top = Math.max(max, 1);
  const raw = top / 4;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw));
  return { step, top: step * Math.ceil(top / step) };
}

// Which days get a label, so labels never run into each other (about a dozen at most): every
// day for two weeks, every few days (counted back from the last) up to two months, the 1st and
// 15th up to four, and month starts beyond. [{i, text}], `i` the day's index.
export function dayTicks(days) {
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

export const tokensOf = (d) => (d.promptTokens || 0) + (d.completionTokens || 0);

export function requestsText(u) {
  return `${counted(u.requests, "request")} (${counted(u.errors || 0, "error")}, ${count(u.rateLimited)} rate limited)`;
}

// The chart in words, for those who do not see it.
export function usageSummary(usage) {
  const t = usage.totals;
  let text =
    `${requestsText(t)} and ${counted(t.promptTokens + t.completionTokens, "token")} ` +
    `(${count(t.promptTokens)} prompt, ${count(t.completionTokens)} completion) over ${counted(usage.days.length, "day")}.`;
  const busiest = usage.days.reduce((best, d) => (!best || d.requests > best.requests ? d : best), null);
  if (busiest && busiest.requests > 0) {
    text +=
      ` The busiest day was ${dayLabel(busiest.date, { dateStyle: "medium" })},` +
      ` with ${counted(busiest.requests, "request")} and ${counted(tokensOf(busiest), "token")}.`;
  }
  return text;
}

// Where everything goes in a 1000 × 340 view box: per day a bar of requests, split into
// answered, errors and rate limited, on the left axis, and a point of tokens (prompt +
// completion) on the right axis. Every day of the range has its place, a day without requests
// a bar of height 0 and its point at 0; both axes start at 0.
export function usageChart(usage) {
  const W = 1000;
  const H = 340;
  const plot = { left: 64, right: W - 72, top: 44, bottom: H - 52 };
  const width = plot.right - plot.left;
  const height = plot.bottom - plot.top;
  const days = usage.days;
  const n = Math.max(days.length, 1);
  const req = niceAxis(Math.max(0, ...days.map((d) => d.requests)));
  const tok = niceAxis(Math.max(0, ...days.map(tokensOf)));
  const y = (value, axis) => plot.bottom - (value / axis.top) * height;
  const slot = width / n;
  const barWidth = Math.max(slot * 0.72, 0.6);
  const gridOf = (axis) => {
    const lines = [];
    for (let v = 0; v <= axis.top; v += axis.step) lines.push({ value: v, y: y(v, axis) });
    return lines;
  };
  const bars = days.map((d, i) => {
    const errors = d.errors || 0;
    const limited = d.rateLimited || 0;
    const answered = Math.max(0, d.requests - errors - limited);
    const segments = [];
    let base = 0;
    for (const [value, cls] of [[answered, "bar-ok"], [errors, "bar-error"], [limited, "bar-limited"]]) {
      const top = y(base + value, req);
      segments.push({ cls, y: top, height: y(base, req) - top });
      base += value;
    }
    return {
      date: d.date,
      requests: d.requests,
      tokens: tokensOf(d),
      title: `${dayLabel(d.date, { dateStyle: "medium" })}: ${requestsText(d)}, ${counted(tokensOf(d), "token")}`,
      x: plot.left + i * slot + (slot - barWidth) / 2,
      width: barWidth,
      segments,
    };
  });
  return {
    W,
    H,
    plot,
    requestsGrid: gridOf(req),
    tokensGrid: gridOf(tok),
    ticks: dayTicks(days).map((t) => ({ x: plot.left + (t.i + 0.5) * slot, text: t.text })),
    bars,
    points: days.map((d, i) => ({ x: plot.left + (i + 0.5) * slot, y: y(tokensOf(d), tok) })),
    // Dots only while there is room for them; a year of dots would be a second, thicker line.
    dots: days.length <= 92,
  };
}
