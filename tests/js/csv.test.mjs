// Unit tests of the settings page's CSV import (assets/settings/js/csv.js): parsing, header
// mapping, rows as records, and batching. Run with `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BATCH_RECORDS,
  CsvError,
  batches,
  csvRows,
  mapColumns,
  parseAmount,
  parseCsv,
  precheck,
  toRecord,
} from "../../assets/settings/js/csv.js";

const cellsOf = (text) => parseCsv(text).map((r) => r.cells);

test("plain rows, with the file line each starts on", () => {
  assert.deepEqual(parseCsv("a,b,c\n1,2,3\n"), [
    { line: 1, cells: ["a", "b", "c"] },
    { line: 2, cells: ["1", "2", "3"] },
  ]);
  // The last record may end without a line break; a final line break adds no row.
  assert.deepEqual(cellsOf("a,b\n1,2"), [["a", "b"], ["1", "2"]]);
  assert.deepEqual(cellsOf("a,,b,\n"), [["a", "", "b", ""]]);
  assert.deepEqual(parseCsv(""), []);
});

test("quoted fields hold quotes, commas and line breaks", () => {
  assert.deepEqual(cellsOf('"say ""hi""",x\n'), [['say "hi"', "x"]]);
  assert.deepEqual(cellsOf('"Acme, Inc.",2\n'), [["Acme, Inc.", "2"]]);
  assert.deepEqual(cellsOf('"",""""\n'), [["", '"']]);
  const rows = parseCsv('id,body\n1,"first\nsecond\r\nthird"\n2,after\n');
  assert.deepEqual(rows[1], { line: 2, cells: ["1", "first\nsecond\nthird"] });
  // The row after a cell of three lines starts on line 5, where an editor shows it.
  assert.deepEqual(rows[2], { line: 5, cells: ["2", "after"] });
});

test("CRLF, LF and a lone CR all end a record", () => {
  assert.deepEqual(cellsOf("a,b\r\n1,2\r\n"), [["a", "b"], ["1", "2"]]);
  assert.deepEqual(parseCsv("a\r1\r2").map((r) => [r.line, r.cells[0]]), [[1, "a"], [2, "1"], [3, "2"]]);
  // The same file saved with either line end imports the same text.
  assert.deepEqual(cellsOf('x\n"one\r\ntwo"\n'), cellsOf('x\n"one\ntwo"\n'));
});

test("a byte order mark is dropped, a blank line is an empty row", () => {
  assert.deepEqual(cellsOf("\uFEFFkind,title\n"), [["kind", "title"]]);
  assert.deepEqual(cellsOf("a\n\nb\n"), [["a"], [""], ["b"]]);
});

test("a stray quote inside an unquoted field is text; an unclosed quote is an error", () => {
  assert.deepEqual(cellsOf('5" screen,x\n'), [['5" screen', "x"]]);
  assert.throws(() => parseCsv('a,b\n1,"never closed\n2,3\n'), (e) => e instanceof CsvError && /starts on line 2 is never closed/.test(e.message));
});

test("header names match without case, spaces, underscores or hyphens, and aliases", () => {
  const header = ["Kind", "External ID", "name", "Description", "company", "updated_at", "Close-Date", "link", "Internal notes", "constructor"];
  assert.deepEqual(mapColumns(header, ""), [
    { index: 0, field: "kind" },
    { index: 1, field: "externalId" },
    { index: 2, field: "title" },
    { index: 3, field: "body" },
    { index: 4, field: "accountName" },
    { index: 5, field: "sourceUpdatedAt" },
    { index: 6, field: "closeDate" },
    { index: 7, field: "url" },
  ]);
  for (const spelling of ["externalId", "external_id", "EXTERNAL-ID", " external id "]) {
    assert.equal(mapColumns(["kind", spelling, "title"], "")[1].field, "externalId", spelling);
  }
  assert.deepEqual(mapColumns(["account", "content"].concat(["kind", "externalId", "title"]), "").slice(0, 2), [
    { index: 0, field: "accountName" },
    { index: 1, field: "body" },
  ]);
});

test("properties.<name> columns become properties, kept as text", () => {
  const columns = mapColumns(["kind", "externalId", "title", "properties.region", "Properties. Plan Tier ", "properties.__proto__"], "");
  assert.deepEqual(columns.slice(3), [
    { index: 3, property: "region" },
    { index: 4, property: "Plan Tier" },
    { index: 5, property: "__proto__" },
  ]);
  const { record, problems } = toRecord(["deal", "d-1", "Deal", "EMEA", " 02134 ", "x"], columns, "");
  assert.deepEqual(problems, []);
  assert.deepEqual({ ...record.properties }, { region: "EMEA", "Plan Tier": "02134", ["__proto__"]: "x" });
  assert.equal(Object.getPrototypeOf(record.properties), null, "an ordinary key, not the prototype");
  assert.equal(JSON.stringify(record.properties), '{"region":"EMEA","Plan Tier":"02134","__proto__":"x"}');
});

test("a column named twice, or a required one missing, is refused with a sentence", () => {
  assert.throws(() => mapColumns(["kind", "externalId", "external_id", "title"], ""), {
    message: "Columns 2 and 3 are both externalId; keep one of them.",
  });
  assert.throws(() => mapColumns(["kind", "externalId", "title", "properties.a", "properties.a"], ""), /Columns 4 and 5 are both properties\.a/);
  assert.throws(() => mapColumns(["title"], ""), {
    message: "The first row must name the columns; missing: kind, externalId (or choose a kind for rows without one).",
  });
  // A kind for rows without one makes the column optional.
  assert.throws(() => mapColumns(["title"], "note"), { message: "The first row must name the columns; missing: externalId." });
  assert.equal(mapColumns(["externalId", "title"], "note").length, 2);
});

test("a row as a record: empty cells absent, text trimmed but the body, kind and status lowercased", () => {
  const columns = mapColumns(["kind", "externalId", "title", "body", "amount", "status", "url"], "");
  const { record, problems } = toRecord([" Deal ", " d-7 ", " Big deal ", "  indented\nbody ", "1,250.50", "OPEN", ""], columns, "");
  assert.deepEqual(problems, []);
  assert.deepEqual(record, { kind: "deal", externalId: "d-7", title: "Big deal", body: "  indented\nbody ", amount: 1250.5, status: "open" });
  // Fewer cells than columns: the missing ones are absent.
  assert.deepEqual(toRecord(["note", "n-1", "Note"], columns, "").record, { kind: "note", externalId: "n-1", title: "Note" });
});

test("what the page can tell is wrong with a row, kind first", () => {
  const columns = mapColumns(["kind", "externalId", "title", "amount"], "");
  assert.deepEqual(toRecord(["", "", "", "$100"], columns, "").problems, [
    "kind is missing",
    "amount must be a number, such as 1250 or 1,250.50",
    "externalId is missing",
    "title is missing",
  ]);
  assert.deepEqual(toRecord(["invoice", "i-1", "Invoice"], columns, "").problems, ["kind must be one of deal, account, contact, note, feedback, document"]);
  // The default kind fills rows without one, and only those.
  assert.equal(toRecord(["", "n-2", "Note"], columns, "note").record.kind, "note");
  assert.equal(toRecord(["account", "a-1", "Acme"], columns, "note").record.kind, "account");
});

test("amounts: plain numbers, optionally with thousands separators, nothing guessed", () => {
  for (const [text, value] of [["1250", 1250], ["1,250.50", 1250.5], ["1,234,567.89", 1234567.89], ["-3.5", -3.5], [".5", 0.5], ["1e3", 1000], ["+7", 7]]) {
    assert.equal(parseAmount(text), value, text);
  }
  for (const text of ["1,5", "12,34", "$100", "1.2.3", "abc", "", "1e999", "1 000"]) assert.equal(parseAmount(text), null, text);
});

test("a whole file: blank rows skipped, lines kept, empty files refused", () => {
  const rows = csvRows("\uFEFFkind,externalId,title\r\nnote,n-1,First\r\n,,\r\n\r\nnote,n-2,\r\n", "");
  assert.deepEqual(rows.map((r) => [r.line, r.record.externalId, r.problems]), [
    [2, "n-1", []],
    [5, "n-2", ["title is missing"]],
  ]);
  assert.throws(() => csvRows("", ""), { message: "The file is empty." });
  assert.throws(() => csvRows("kind,externalId,title\n,,\n", ""), { message: "The file has a header row but no records." });
});

test("a (kind, externalId) the file already had is a problem of the later row", () => {
  const rows = csvRows("kind,externalId,title\nnote,n-1,A\naccount,n-1,B\nnote,n-1,C\n", "");
  precheck(rows);
  assert.deepEqual(rows.map((r) => r.problems), [[], [], ["kind and externalId repeat those of line 2"]]);
});

test("batches of at most 500 records and about 1 MB of JSON, in file order", () => {
  const rows = Array.from({ length: 1001 }, (_, i) => ({ line: i + 2, record: { kind: "note", externalId: `n-${i}`, title: "t" } }));
  const out = batches(rows);
  assert.deepEqual(out.map((b) => b.length), [BATCH_RECORDS, BATCH_RECORDS, 1]);
  assert.deepEqual(out.flat().map((r) => r.line), rows.map((r) => r.line));
  const big = Array.from({ length: 5 }, (_, i) => ({ line: i, record: { kind: "document", externalId: `d-${i}`, title: "t", body: "é".repeat(200_000) } }));
  const sized = batches(big);
  assert.deepEqual(sized.map((b) => b.length), [2, 2, 1], "two-byte characters count as two bytes");
  for (const b of sized) assert.ok(Buffer.byteLength(JSON.stringify(b.map((r) => r.record))) < 1_000_000);
  assert.deepEqual(batches([]), []);
});
