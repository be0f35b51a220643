// Unit tests of the usage chart's geometry and words (assets/settings/js/chart.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { dayTicks, niceAxis, usageChart, usageSummary } from "../../assets/settings/js/chart.js";
import { DAY_MS, dayLabel, dayMs, isoDay } from "../../assets/settings/js/format.js";

// `n` UTC days ending on `last`, all without requests unless `data` says otherwise.
function range(last, n, data = {}) {
  return Array.from({ length: n }, (_, i) => {
    const date = isoDay(dayMs(last) - (n - 1 - i) * DAY_MS);
    return { date, requests: 0, errors: 0, rateLimited: 0, promptTokens: 0, completionTokens: 0, ...data[date] };
  });
}

const usageOf = (days) => ({
  from: days[0].date,
  to: days.at(-1).date,
  days,
  totals: days.reduce(
    (t, d) => ({
      requests: t.requests + d.requests,
      errors: t.errors + d.errors,
      rateLimited: t.rateLimited + d.rateLimited,
      promptTokens: t.promptTokens + d.promptTokens,
      completionTokens: t.completionTokens + d.completionTokens,
    }),
    { requests: 0, errors: 0, rateLimited: 0, promptTokens: 0, completionTokens: 0 },
  ),
});

const close = (a, b, what) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} != ${b}`);

test("axes go from 0 to a round number in at most four steps, whole steps", () => {
  assert.deepEqual(niceAxis(0), { step: 1, top: 1 });
  assert.deepEqual(niceAxis(3), { step: 1, top: 3 });
  assert.deepEqual(niceAxis(7), { step: 2, top: 8 });
  assert.deepEqual(niceAxis(100), { step: 50, top: 100 });
  assert.deepEqual(niceAxis(1001), { step: 500, top: 1500 });
  assert.deepEqual(niceAxis(45_000), { step: 20_000, top: 60_000 });
  for (let max = 0; max < 5000; max += 37) {
    const { step, top } = niceAxis(max);
    assert.ok(top >= max && top / step <= 4 && Number.isInteger(step), `${max}: ${step} ${top}`);
  }
});

test("every day of the range is a bar, a day without requests one of height 0", () => {
  const days = range("2026-03-30", 30, { "2026-03-30": { requests: 4, errors: 1, rateLimited: 1, promptTokens: 360, completionTokens: 90 } });
  const chart = usageChart(usageOf(days));
  const { plot } = chart;
  assert.equal(chart.bars.length, 30);
  assert.deepEqual(chart.bars.map((b) => b.date), days.map((d) => d.date));
  chart.bars.forEach((b, i) => {
    assert.ok(b.x >= plot.left && b.x + b.width <= plot.right, `bar ${i} inside the plot`);
    if (i) assert.ok(b.x > chart.bars[i - 1].x + chart.bars[i - 1].width, `bar ${i} after the one before`);
    assert.equal(b.segments.length, 3);
  });
  for (const bar of chart.bars.slice(0, 29)) {
    assert.equal(bar.requests, 0);
    for (const s of bar.segments) {
      close(s.height, 0, "an empty day's segment");
      close(s.y, plot.bottom, "on the baseline");
    }
  }
  // The last day: 2 answered, 1 error, 1 rate limited, stacked in that order from the bottom.
  const last = chart.bars.at(-1);
  assert.deepEqual(last.segments.map((s) => s.cls), ["bar-ok", "bar-error", "bar-limited"]);
  const unit = (plot.bottom - plot.top) / chart.requestsGrid.at(-1).value;
  close(last.segments[0].height, 2 * unit, "answered");
  close(last.segments[1].height, unit, "errors");
  close(last.segments[2].height, unit, "rate limited");
  close(last.segments[0].y + last.segments[0].height, plot.bottom, "answered starts at 0");
  close(last.segments[1].y + last.segments[1].height, last.segments[0].y, "errors on top of answered");
  assert.equal(last.tokens, 450);
  assert.match(last.title, /: 4 requests \(1 error, 1 rate limited\), 450 tokens$/);
});

test("both axes include zero, at the baseline, and reach the largest day", () => {
  const days = range("2026-03-30", 7, { "2026-03-29": { requests: 9, promptTokens: 1200, completionTokens: 300 } });
  const chart = usageChart(usageOf(days));
  for (const grid of [chart.requestsGrid, chart.tokensGrid]) {
    assert.equal(grid[0].value, 0);
    close(grid[0].y, chart.plot.bottom, "zero at the baseline");
    close(grid.at(-1).y, chart.plot.top, "the top at the top");
  }
  assert.ok(chart.requestsGrid.at(-1).value >= 9);
  assert.ok(chart.tokensGrid.at(-1).value >= 1500);
  // One point of tokens per day, at 0 on days without any.
  assert.equal(chart.points.length, 7);
  assert.deepEqual(chart.points.map((p) => p.y === chart.plot.bottom), [true, true, true, true, true, false, true]);
  assert.equal(chart.dots, true);
  // Nothing at all: still a chart, with axes from 0 to 1.
  const empty = usageChart(usageOf(range("2026-03-30", 3)));
  assert.deepEqual(empty.requestsGrid.map((g) => g.value), [0, 1]);
  assert.equal(empty.bars.length, 3);
});

test("labels: every day for two weeks, a few for a month, the 1st and 15th for a quarter", () => {
  const week = dayTicks(range("2026-03-30", 7));
  assert.deepEqual(week.map((t) => t.i), [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(week[6].text, dayLabel("2026-03-30", { month: "short", day: "numeric" }));
  const month = dayTicks(range("2026-03-30", 30));
  assert.ok(month.length >= 8 && month.length <= 10, String(month.length));
  assert.equal(month.at(-1).i, 29, "counted back from the last day");
  const quarterDays = range("2026-03-30", 90);
  const quarter = dayTicks(quarterDays);
  assert.deepEqual(quarter.map((t) => quarterDays[t.i].date.slice(8)), ["01", "15", "01", "15", "01", "15"]);
});

test("a year: a thin bar for each of 366 days, labels at month starts only, the year where it changes", () => {
  const days = range("2026-03-30", 366, { "2026-03-30": { requests: 5 } });
  const chart = usageChart(usageOf(days));
  assert.equal(chart.bars.length, 366);
  assert.ok(chart.bars.every((b) => b.width > 0 && b.width < 2));
  assert.equal(chart.dots, false, "no dots for a year");
  const ticks = dayTicks(days);
  assert.ok(ticks.length >= 12 && ticks.length <= 13, String(ticks.length));
  assert.ok(ticks.every((t) => days[t.i].date.endsWith("-01")));
  assert.deepEqual(chart.ticks.map((t) => t.text), ticks.map((t) => t.text));
  const withYear = { month: "short", year: "numeric" };
  assert.equal(ticks[0].text, dayLabel(days[ticks[0].i].date, withYear), "the first label names the year");
  const january = ticks.find((t) => days[t.i].date === "2026-01-01");
  assert.equal(january.text, dayLabel("2026-01-01", withYear));
  const june = ticks.find((t) => days[t.i].date === "2025-06-01");
  assert.equal(june.text, dayLabel("2025-06-01", { month: "short" }));
});

test("the chart in words: totals, and the busiest day", () => {
  const days = range("2026-03-30", 30, {
    "2026-03-20": { requests: 1, promptTokens: 10, completionTokens: 5 },
    "2026-03-30": { requests: 4, errors: 1, promptTokens: 350, completionTokens: 85 },
  });
  assert.equal(
    usageSummary(usageOf(days)),
    "5 requests (1 error, 0 rate limited) and 450 tokens (360 prompt, 90 completion) over 30 days." +
      ` The busiest day was ${dayLabel("2026-03-30", { dateStyle: "medium" })}, with 4 requests and 435 tokens.`,
  );
  assert.equal(usageSummary(usageOf(range("2026-03-30", 1))), "0 requests (0 errors, 0 rate limited) and 0 tokens (0 prompt, 0 completion) over 1 day.");
});
