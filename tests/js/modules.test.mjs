// The settings page's modules as the browser loads them: relative `.js` imports of files that
// exist, named as the Worker serves them (/settings/js/<lowercase-name>.js), and pure modules
// that import only pure ones, so Node (and these tests) can load them without a DOM.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../assets/settings/", import.meta.url));
const MODULES = readdirSync(join(ROOT, "js")).filter((f) => f.endsWith(".js"));
const PURE = ["chart.js", "csv.js", "format.js", "insights.js", "model.js", "snippets.js"];

const importsOf = (file) => [...readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+["']([^"']+)["']/gm)].map((m) => m[1]);

test("every module is named as the Worker serves it, and every import resolves", () => {
  for (const name of MODULES) assert.match(name, /^[a-z0-9-]+\.js$/, name);
  for (const file of ["app.js", ...MODULES.map((m) => join("js", m))]) {
    for (const spec of importsOf(join(ROOT, file))) {
      assert.match(spec, /^\.\.?\/.*\.js$/, `${file}: ${spec} is relative, with its extension`);
      const target = join(dirname(join(ROOT, file)), spec);
      assert.ok(existsSync(target), `${file}: ${spec} exists`);
      assert.equal(relative(ROOT, target).startsWith(".."), false, `${file}: ${spec} stays in the page's files`);
    }
  }
  assert.match(readFileSync(join(ROOT, "index.html"), "utf8"), /<script type="module" src="\/settings\/app\.js"><\/script>/);
});

test("pure modules import only pure modules, and touch no DOM", () => {
  for (const name of PURE) {
    const source = readFileSync(join(ROOT, "js", name), "utf8");
    for (const spec of importsOf(join(ROOT, "js", name))) assert.ok(PURE.includes(spec.replace("./", "")), `${name} imports ${spec}`);
    assert.doesNotMatch(source, /\b(document|window|navigator|location|sessionStorage|localStorage)\s*[.[]/, name);
  }
});

test("every module loads in Node: none touches the DOM at import time", async () => {
  assert.equal(typeof globalThis.document, "undefined");
  for (const name of MODULES) await import(new URL(`../../assets/settings/js/${name}`, import.meta.url));
});
