// Times, counts and durations as the page shows them. Pure: no DOM, so Node can test it.
// `undefined` locale: the browser's own.

export const DAY_MS = 86400000;

// "3 hours ago", "in 2 days", "just now"; "Never" for no time at all.
export function relative(iso, now = Date.now()) {
  if (!iso) return "Never";
  const secs = Math.round((now - Date.parse(iso)) / 1000);
  const abs = Math.abs(secs);
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const fmt = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [unit, size] of units) {
    if (abs >= size) return fmt.format(-Math.round(secs / size), unit);
  }
  return abs < 10 ? "just now" : fmt.format(-secs, "second");
}

export function date(iso) {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
}

export function count(n) {
  return (n || 0).toLocaleString();
}

// "1 error", "2 errors"; `plural` where adding an "s" is not it.
export function counted(n, word, plural = `${word}s`) {
  return `${count(n)} ${n === 1 ? word : plural}`;
}

// An LLM time as a person reads it; the exact milliseconds are in the cell's title.
export function duration(ms) {
  ms = ms || 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// A time as a datetime-local input shows it: local time, to the minute.
export function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// UTC days as the usage route names them ("2026-03-01").
export const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
export const dayMs = (day) => Date.parse(`${day}T00:00:00Z`);
export const dayLabel = (day, opts) => new Date(dayMs(day)).toLocaleDateString(undefined, { timeZone: "UTC", ...opts });

// "1.2K", "3M": axis labels.
export const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
