// Small DOM helpers shared by the tabs. They touch the document only when called.

export const $ = (id) => document.getElementById(id);

export function cell(text, opts = {}) {
  const td = document.createElement("td");
  if (opts.num) td.className = "num";
  if (opts.code) {
    const code = document.createElement("code");
    code.textContent = text;
    td.appendChild(code);
  } else {
    td.textContent = text;
  }
  if (opts.title) td.title = opts.title;
  return td;
}

export function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

export function trashIcon() {
  const svg = svgEl("svg", { viewBox: "0 0 24 24", width: 18, height: 18, "aria-hidden": "true" });
  svg.appendChild(svgEl("path", { d: "M9 3h6l1 2h4v2H4V5h4l1-2zM6 9h12l-1 12H7L6 9zm4 2v8h2v-8h-2zm4 0v8h2v-8h-2z", fill: "currentColor" }));
  return svg;
}

export function button(label, aria, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  if (typeof label === "string") b.textContent = label;
  else b.appendChild(label);
  b.setAttribute("aria-label", aria);
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

// Fills a table body with one row per item (cells from `row`), and shows the empty note
// when there is nothing.
export function renderTable(tableId, emptyId, items, row) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(
    ...items.map((item) => {
      const tr = document.createElement("tr");
      tr.append(...row(item));
      return tr;
    }),
  );
  $(emptyId).hidden = items.length > 0;
}

export function actionsCell(...buttons) {
  const td = document.createElement("td");
  td.className = "row-actions";
  td.append(...buttons.filter(Boolean));
  return td;
}

// A link only for http(s) URLs: the API validates them, and the page does not rely on that to
// keep `javascript:` out of an href.
export function recordTitle(r, tag) {
  const el = document.createElement(tag);
  if (r.url && /^https?:\/\//i.test(r.url)) {
    const a = document.createElement("a");
    a.href = r.url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = r.title;
    el.appendChild(a);
  } else {
    el.textContent = r.title;
  }
  return el;
}

// Copies a read-only field's text (a new key, a snippet) and says so in `status`; where the
// clipboard is refused, the text is selected for the admin to copy by hand.
export async function copyField(field, status, what) {
  try {
    await navigator.clipboard.writeText(field.value);
    status.textContent = "Copied to the clipboard.";
  } catch (e) {
    field.select();
    status.textContent = `Copy failed: select ${what} and copy it by hand.`;
  }
}
