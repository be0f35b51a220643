// CSV files as knowledge records, pure: no DOM, so Node can test it. Parsing, which column is
// which field, each row as a record with what the page can tell is wrong with it, and the
// batches the import sends.

import { KINDS } from "./model.js";

export class CsvError extends Error {}

// RFC 4180: fields separated by commas; a field in double quotes may hold commas, line breaks
// and "" for a quote. Records end with CRLF, LF or a lone CR (spreadsheets write all three); a
// leading byte order mark is dropped. A stray quote inside an unquoted field is kept as text,
// as spreadsheets do. Returns [{line, cells}], `line` being the line of the file the record
// starts on, so an error points where a text editor shows the row.
export function parseCsv(text) {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const rows = [];
  let cells = [];
  let field = "";
  let fieldStart = true; // nothing read yet for this field: a quote here opens a quoted field
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  let quoteLine = 0;
  const endField = () => {
    cells.push(field);
    field = "";
    fieldStart = true;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else if (c === "\r" || c === "\n") {
        // One "\n" for any line break, so the same file saved on Windows or elsewhere imports
        // the same text (and comes back `unchanged` rather than `updated`).
        if (c === "\r" && text[i + 1] === "\n") i++;
        field += "\n";
        line++;
      } else {
        field += c;
      }
    } else if (c === '"' && fieldStart) {
      quoted = true;
      fieldStart = false;
      quoteLine = line;
    } else if (c === ",") {
      endField();
    } else if (c === "\r" || c === "\n") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      endField();
      rows.push({ line: rowLine, cells });
      cells = [];
      line++;
      rowLine = line;
    } else {
      field += c;
      fieldStart = false;
    }
  }
  if (quoted) throw new CsvError(`The quoted field that starts on line ${quoteLine} is never closed.`);
  // The last record may end without a line break.
  if (!fieldStart || cells.length > 0) {
    endField();
    rows.push({ line: rowLine, cells });
  }
  return rows;
}

// Header names, compared without case, spaces, "_" or "-": `externalId`, `external_id` and
// `External ID` are the same column.
const normalize = (name) => name.toLowerCase().replace(/[\s_-]+/g, "");
const FIELDS = ["kind", "externalId", "title", "body", "url", "source", "accountName", "amount", "currency", "stage", "status", "closeDate", "owner", "sourceUpdatedAt"];
// A Map, not an object: a column named "constructor" must not find Object's.
const COLUMN_NAMES = new Map([
  ...FIELDS.map((f) => [normalize(f), f]),
  ["name", "title"],
  ["description", "body"],
  ["content", "body"],
  ["link", "url"],
  ["account", "accountName"],
  ["company", "accountName"],
  ["updatedat", "sourceUpdatedAt"],
]);

// Which column holds which field: [{index, field}] or [{index, property}] for
// `properties.<name>` columns. Unknown columns are left out; a field named twice is an error,
// since either choice could silently import the wrong one.
export function mapColumns(header, defaultKind) {
  const columns = [];
  const seen = new Map();
  header.forEach((raw, index) => {
    const name = raw.trim();
    const prop = /^properties\.(.+)$/i.exec(name);
    const column = prop ? { index, property: prop[1].trim() } : { index, field: COLUMN_NAMES.get(normalize(name)) };
    if (!column.property && !column.field) return;
    const key = column.property ? `properties.${column.property}` : column.field;
    if (seen.has(key)) throw new CsvError(`Columns ${seen.get(key) + 1} and ${index + 1} are both ${key}; keep one of them.`);
    seen.set(key, index);
    columns.push(column);
  });
  const missing = ["externalId", "title"].filter((f) => !seen.has(f));
  if (!seen.has("kind") && !defaultKind) missing.unshift("kind");
  if (missing.length) {
    const hint = missing.includes("kind") ? " (or choose a kind for rows without one)" : "";
    throw new CsvError(`The first row must name the columns; missing: ${missing.join(", ")}${hint}.`);
  }
  return columns;
}

// Plain numbers, optionally with thousands separated by commas ("1,250.50"). Anything else
// ("1,5", "$100") is an error rather than a guess.
export function parseAmount(text) {
  const plain = /^\d{1,3}(,\d{3})+(\.\d+)?$/.test(text) ? text.replace(/,/g, "") : text;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(plain)) return null;
  const n = Number(plain);
  return Number.isFinite(n) ? n : null;
}

// One CSV row as a record: empty cells are absent; text is trimmed but for `body`; `kind` and
// `status` are lowercased. Returns {record, problems}: the rules the page can check itself
// (required fields, a known kind, a numeric amount), so a row that cannot be valid does not
// cost its whole batch; the API checks everything else.
export function toRecord(cells, columns, defaultKind) {
  const record = {};
  const problems = [];
  for (const column of columns) {
    const raw = cells[column.index];
    if (raw === undefined || raw.trim() === "") continue;
    const value = column.field === "body" ? raw : raw.trim();
    if (column.property) {
      // Kept as text: "02134" is a postal code, not a number. No prototype, so a column
      // named properties.__proto__ is an ordinary key.
      record.properties = record.properties || Object.create(null);
      record.properties[column.property] = value;
    } else if (column.field === "amount") {
      const n = parseAmount(value);
      if (n === null) problems.push("amount must be a number, such as 1250 or 1,250.50");
      else record.amount = n;
    } else if (column.field === "kind" || column.field === "status") {
      record[column.field] = value.toLowerCase();
    } else {
      record[column.field] = value;
    }
  }
  if (!record.kind && defaultKind) record.kind = defaultKind;
  if (!record.kind) problems.unshift("kind is missing");
  else if (!KINDS.includes(record.kind)) problems.unshift(`kind must be one of ${KINDS.join(", ")}`);
  if (!record.externalId) problems.push("externalId is missing");
  if (!record.title) problems.push("title is missing");
  return { record, problems };
}

// A whole file's rows as [{line, record, problems}]; a CsvError for a file that cannot be
// imported at all. Rows with nothing in them (blank lines, ",,,," from spreadsheets) are not
// records.
export function csvRows(text, defaultKind) {
  const parsed = parseCsv(text);
  if (parsed.length === 0) throw new CsvError("The file is empty.");
  const columns = mapColumns(parsed[0].cells, defaultKind);
  const rows = parsed
    .slice(1)
    .filter((row) => row.cells.some((c) => c.trim() !== ""))
    .map((row) => ({ line: row.line, ...toRecord(row.cells, columns, defaultKind) }));
  if (rows.length === 0) throw new CsvError("The file has a header row but no records.");
  return rows;
}

// The rules the page checks before sending, per row (see toRecord), and a (kind, externalId)
// the file already had: the API would refuse it within a batch, and across batches the later
// row would silently overwrite the earlier one.
export function precheck(rows) {
  const first = new Map();
  for (const row of rows) {
    if (row.problems.length) continue;
    const key = `${row.record.kind}\u0000${row.record.externalId}`;
    if (first.has(key)) row.problems.push(`kind and externalId repeat those of line ${first.get(key)}`);
    else first.set(key, row.line);
  }
}

export const BATCH_RECORDS = 500;
// The route takes at most 1 MiB a request; stay under it with room for the envelope, so
// long bodies make smaller batches instead of a 413.
export const BATCH_BYTES = 1000 * 1000;

// Consecutive rows in batches of at most BATCH_RECORDS records and BATCH_BYTES of JSON.
export function batches(rows) {
  const encoder = new TextEncoder();
  const out = [];
  let current = [];
  let bytes = 0;
  for (const row of rows) {
    const size = encoder.encode(JSON.stringify(row.record)).length + 1;
    if (current.length && (current.length === BATCH_RECORDS || bytes + size > BATCH_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(row);
    bytes += size;
  }
  if (current.length) out.push(current);
  return out;
}
