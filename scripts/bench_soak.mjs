// The soak bench of `make bench` (BENCH_SUITES=soak): sustained mixed traffic against one
// local Worker, with its memory sampled over time, to tell a leak from a warm-up.
//
// On Cloudflare an isolate has 128 MB, so what has to stay flat after warm-up is the Worker's
// own isolate: its JS heap and its wasm linear memory (which never shrinks). Locally there is
// more in the way: workerd also runs local D1/KV/Durable Objects (each its own isolate, plus
// SQLite outside any heap), and `wrangler dev` adds a second workerd running its proxy and,
// with the DevTools inspector on, its InspectorProxyWorker. Each is sampled on its own.
//
// Load: CONCURRENCY closed-loop connections for SOAK_SECONDS, each request picked in turn from
// the mix: JSON chats and streamed chats (`"stream": true`, read to `event: done`), new or
// continuing a recent chat (retired after CHAT_TURNS turns, so the work per turn stays level),
// GET /api/health, and chat reads (GET /api/chats, GET /api/chats/{id}). SOAK_MIX=health sends
// only GET /api/health (a D1 read), SOAK_MIX=no-io only a request refused before any I/O (a
// malformed key on GET /api/chats): controls that tell the Worker from local D1.
// SOAK_MIX=backup runs, one after the other, an operator's restore of a workspace of
// SOAK_BACKUP_RECORDS records (50,000) and SOAK_BACKUP_MESSAGES messages (100,000) into a fresh
// workspace and its deletion: the Worker's memory while it reads 56 MB line by line (its wasm
// memory never shrinks, so its last sample is the peak the Rust side ever needed). The export
// is not part of it: with this sampler's DevTools sessions on the Worker's isolate, a streamed
// export sent no headers for 300 s locally (without them it streams at once); its memory is
// bounded by one page of 500 rows, and benches/lifecycle.rs times it.
//
// Memory, before the load, every SOAK_SAMPLE_SECONDS during it, as it ends, and once more a
// pause later (what a quiet Worker gives back):
//   - the resident memory (VmRSS, and its anonymous and file-backed parts) of every workerd
//     under the launcher's process, and of the launcher's node processes (wrangler);
//   - per isolate, through a DevTools session opened only to sample and closed at once: the JS
//     heap as found (Runtime.getHeapUsage), then live, after the full GC that
//     Runtime.queryObjects does before it walks the heap for every WebAssembly.Memory, whose
//     sizes are the wasm linear memory. The inspector sockets come from
//     scripts/bench_workerd.sh. An isolate that wrangler's inspector already holds is not
//     touched (a session would evict it), so under `wrangler dev` the Worker's own isolate is
//     not sampled: its numbers come from the run without the inspector.
//   - Each sampled isolate's stored console messages are discarded first: V8 keeps up to 1,000
//     of them whenever workerd has an inspector socket, so they are the sampling's own cost
//     (the Worker logs a line per request), not the Worker's.
//
// Verdict per series: the warm-up level is the highest sample of the first third of the run;
// "growing" when even the lowest sample of the last third is above it by more than 10% (at
// least 1/4 MiB for heaps and wasm, 16 MiB for resident memory), else "flat"; with the slope
// after warm-up per minute and per 1,000 requests. The last line is the verdict on the Worker's
// isolate: its live JS heap and its wasm memory.
//
// Environment: SOAK_BASE_URL, SOAK_LAUNCHER_PID (the process that started the Worker),
// SOAK_INSPECT_DIR (as for scripts/bench_workerd.sh), ATTIVE_ADMIN_TOKEN, SOAK_LABEL (names the
// run), SOAK_SECONDS (600), SOAK_CONCURRENCY (8), SOAK_SAMPLE_SECONDS (10), SOAK_MIX (mixed),
// SOAK_WORKER_NAME (attive-api: the Worker's isolate), BENCH_RESULTS (the folder of the JSON).
// Run with `node --experimental-websocket` (Node 20 has no WebSocket client without it).
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

const env = (name, fallback) => {
  const value = process.env[name];
  if (value !== undefined && value !== "") return value;
  if (fallback === undefined) throw new Error(`${name} is not set: see the header of scripts/bench_soak.mjs`);
  return fallback;
};
const BASE = env("SOAK_BASE_URL");
const LAUNCHER = Number(env("SOAK_LAUNCHER_PID"));
const INSPECT_DIR = env("SOAK_INSPECT_DIR");
const OP = env("ATTIVE_ADMIN_TOKEN");
const LABEL = env("SOAK_LABEL", "worker");
const SECONDS = Number(env("SOAK_SECONDS", "600"));
const CONCURRENCY = Number(env("SOAK_CONCURRENCY", "8"));
const EVERY = Number(env("SOAK_SAMPLE_SECONDS", "10"));
const MIX = env("SOAK_MIX", "mixed");
const WORKER_NAME = env("SOAK_WORKER_NAME", "attive-api");
const RESULTS = env("BENCH_RESULTS", "bench/results");
const CHAT_TURNS = 20;
const MIB = 1024 * 1024;

// ---- load ---------------------------------------------------------------------------------

async function call(method, path, token, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function apiKey() {
  const ws = await call("POST", "/api/admin/workspaces", OP, { name: `bench-soak-${LABEL}` });
  const admin = await call("POST", `/api/admin/workspaces/${ws.id}/admins`, OP, { name: "Soak", email: "soak@example.com" });
  // A limit the load never reaches: the soak measures memory, not the limiter.
  const key = await call("POST", "/api/settings/api-keys", admin.token, { name: "bench-soak", rateLimitPerMinute: 100000 });
  return key.key;
}

const MIXES = {
  mixed: ["chat", "stream", "health", "chat", "stream", "read", "chat", "stream", "health", "read"],
  health: ["health"],
  "no-io": ["no-io"],
  backup: ["backup"],
};

// The export the backup mix restores, made once: records with bodies of a few hundred
// characters, then chats of 20 messages, each chat before its messages.
let backupExport = null;
function backupBody() {
  if (backupExport) return backupExport;
  const records = Number(env("SOAK_BACKUP_RECORDS", "50000"));
  const messages = Number(env("SOAK_BACKUP_MESSAGES", "100000"));
  const at = new Date(Date.UTC(2026, 10, 1)).toISOString();
  const text = (i) =>
    `Customer feedback ${i}: onboarding took two weeks longer than planned; the admin asked for a guided checklist, ` +
    `better SSO documentation and audit exports before the renewal conversation with the VP of Sales.`;
  const lines = [JSON.stringify({ type: "export", version: 1, workspaceId: "ws_soak", exportedAt: at })];
  for (let i = 0; i < records; i++) {
    lines.push(JSON.stringify({ type: "record", id: `rec_soak${i}`, kind: "feedback", externalId: `soak-${i}`, title: `Onboarding feedback ${i}`, body: text(i), createdAt: at, updatedAt: at }));
  }
  const chats = Math.ceil(messages / 20);
  for (let c = 0, m = 0; c < chats; c++) {
    lines.push(JSON.stringify({ type: "chat", id: `chat_soak${c}`, title: `Question ${c}`, createdAt: at, updatedAt: at }));
    for (let k = 0; k < 20 && m < messages; k++, m++) {
      lines.push(JSON.stringify({ type: "message", id: `msg_soak${m}`, chatId: `chat_soak${c}`, seq: k + 1, role: k % 2 ? "assistant" : "user", content: text(m), createdAt: at }));
    }
  }
  const counts = { record: records, chat: chats, message: messages };
  backupExport = { body: lines.join("\n") + "\n" + JSON.stringify({ type: "end", counts }) + "\n", counts };
  return backupExport;
}
if (!MIXES[MIX]) throw new Error(`SOAK_MIX=${MIX}: one of ${Object.keys(MIXES).join(", ")}`);

class Load {
  constructor(key) {
    this.key = key;
    this.chats = []; // [{ id, turns }]
    this.n = 0;
    this.window = []; // latencies (ms) since the last sample
    this.windowErrors = 0;
    this.total = 0;
    this.byKind = {};
    this.errors = {};
    this.streams = { done: 0, notDone: 0 };
  }

  chatBody(stream) {
    const n = this.n++;
    // Half the turns start a chat; the rest continue a recent one.
    const cont = n % 2 === 1 && this.chats.length > 0 ? this.chats[n % this.chats.length] : null;
    const body = { message: `Soak turn ${n}: what are the top deals in our pipeline?` };
    if (cont) {
      body.chatId = cont.id;
      cont.turns += 1;
      if (cont.turns >= CHAT_TURNS) this.chats.splice(this.chats.indexOf(cont), 1);
    }
    if (stream) body.stream = true;
    return body;
  }

  remember(id) {
    if (!id || this.chats.some((c) => c.id === id)) return;
    this.chats.push({ id, turns: 1 });
    if (this.chats.length > 64) this.chats.shift();
  }

  async once(kind) {
    const auth = { Authorization: `Bearer ${this.key}` };
    const json = { ...auth, "Content-Type": "application/json" };
    switch (kind) {
      case "health": {
        const res = await fetch(`${BASE}/api/health`);
        await res.arrayBuffer();
        return res.status === 200 ? null : `status ${res.status}`;
      }
      case "no-io": {
        const res = await fetch(`${BASE}/api/chats`, { headers: { Authorization: "Bearer not-a-key" } });
        await res.arrayBuffer();
        return res.status === 401 ? null : `status ${res.status}`;
      }
      case "read": {
        const chat = this.chats.length > 0 && this.n++ % 2 === 0 ? this.chats[this.n % this.chats.length] : null;
        const res = await fetch(chat ? `${BASE}/api/chats/${chat.id}` : `${BASE}/api/chats?limit=20`, { headers: auth });
        await res.arrayBuffer();
        return res.status === 200 ? null : `status ${res.status}`;
      }
      case "chat": {
        const res = await fetch(`${BASE}/api/chat`, { method: "POST", headers: json, body: JSON.stringify(this.chatBody(false)) });
        const text = await res.text();
        if (res.status !== 200) return `status ${res.status}: ${text.slice(0, 120)}`;
        this.remember(JSON.parse(text).chatId);
        return null;
      }
      case "stream": {
        const res = await fetch(`${BASE}/api/chat`, {
          method: "POST",
          headers: { ...json, Accept: "text/event-stream" },
          body: JSON.stringify(this.chatBody(true)),
        });
        const text = await res.text();
        if (res.status !== 200) return `status ${res.status}: ${text.slice(0, 120)}`;
        if (!/^event: done$/m.test(text)) {
          this.streams.notDone += 1;
          return `stream without done: ${text.slice(-160)}`;
        }
        this.streams.done += 1;
        const start = /^event: start\ndata: (.*)$/m.exec(text);
        if (start) this.remember(JSON.parse(start[1]).chatId);
        return null;
      }
      case "backup": {
        const { body, counts } = backupBody();
        const op = { Authorization: `Bearer ${OP}` };
        const ws = await call("POST", "/api/admin/workspaces", OP, { name: `bench-soak-backup-${this.n++}` });
        try {
          const imported = await fetch(`${BASE}/api/admin/workspaces/${ws.id}/import`, {
            method: "POST",
            headers: { ...op, "Content-Type": "application/x-ndjson" },
            body,
          });
          const answer = await imported.text();
          if (imported.status !== 200) return `import ${imported.status}: ${answer.slice(0, 160)}`;
          return JSON.parse(answer).counts.message === counts.message ? null : `import counts: ${answer}`;
        } finally {
          await fetch(`${BASE}/api/admin/workspaces/${ws.id}`, { method: "DELETE", headers: op });
        }
      }
      default:
        throw new Error(`unknown kind ${kind}`);
    }
  }

  async connection(c, until) {
    const mix = MIXES[MIX];
    for (let i = c; Date.now() < until; i += CONCURRENCY) {
      const kind = mix[i % mix.length];
      const t0 = performance.now();
      let error;
      try {
        error = await this.once(kind);
      } catch (e) {
        error = String(e?.cause?.code ?? e?.message ?? e);
      }
      this.window.push(performance.now() - t0);
      this.total += 1;
      this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
      if (error) {
        this.windowErrors += 1;
        const k = `${kind}: ${error.split(":")[0]}`;
        this.errors[k] ??= { count: 0, first: error };
        this.errors[k].count += 1;
      }
    }
  }

  takeWindow() {
    const lat = this.window.sort((a, b) => a - b);
    const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
    const out = { requests: lat.length, errors: this.windowErrors, p50: q(0.5), p99: q(0.99) };
    this.window = [];
    this.windowErrors = 0;
    return out;
  }
}

// ---- processes ----------------------------------------------------------------------------

function processTree(root) {
  const parent = new Map();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // The command name may hold spaces and parentheses: the fields start after the last ")".
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(name), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const below = [];
  const walk = (pid) => {
    for (const [child, ppid] of parent) {
      if (ppid === pid) {
        below.push(child);
        walk(child);
      }
    }
  };
  walk(root);
  return below;
}

function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    return {
      comm: readFileSync(`/proc/${pid}/comm`, "utf8").trim(),
      rss: kb("VmRSS") * 1024,
      anon: kb("RssAnon") * 1024,
      file: kb("RssFile") * 1024,
    };
  } catch {
    return null;
  }
}

function inspectorPort(pid) {
  try {
    return Number(readFileSync(`${INSPECT_DIR}/${pid}`, "utf8").trim());
  } catch {
    return null;
  }
}

// ---- DevTools protocol --------------------------------------------------------------------

async function session(url, fn) {
  const ws = new WebSocket(url);
  const pending = new Map();
  const contexts = [];
  let next = 0;
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`cannot open ${url}`));
  });
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.method === "Runtime.executionContextCreated") contexts.push(msg.params.context.id);
    const p = msg.id !== undefined && pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
    else p.resolve(msg.result);
  };
  ws.onclose = () => {
    for (const p of pending.values()) p.reject(new Error("inspector session closed"));
    pending.clear();
  };
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = ++next;
      pending.set(id, { resolve, reject, method });
      ws.send(JSON.stringify({ id, method, params }));
      setTimeout(() => pending.delete(id) && reject(new Error(`${method}: no answer in 10 s`)), 10000).unref();
    });
  try {
    return await fn(send, contexts);
  } finally {
    ws.close();
  }
}

// workerd never answers HeapProfiler.collectGarbage (V8 runs it as a task workerd does not
// pump for the inspector), but Runtime.queryObjects collects all garbage before it walks the
// heap: looking for the wasm memories is also the full GC that makes the heap "live".
async function sampleIsolate(url) {
  return session(url, async (send, contexts) => {
    const found = await send("Runtime.getHeapUsage");
    // Before Runtime.enable, which would otherwise replay them all to this session.
    await send("Runtime.discardConsoleEntries");
    await send("Runtime.enable");
    if (contexts.length === 0) {
      return { heapFound: found.usedSize, heapLive: null, heapTotal: found.totalSize, wasm: null };
    }
    const proto = await send("Runtime.evaluate", { expression: "WebAssembly.Memory.prototype", contextId: contexts[0] });
    const all = await send("Runtime.queryObjects", { prototypeObjectId: proto.result.objectId });
    const live = await send("Runtime.getHeapUsage");
    const sizes = await send("Runtime.callFunctionOn", {
      objectId: all.objects.objectId,
      functionDeclaration: "function () { return this.map((m) => m.buffer.byteLength); }",
      returnByValue: true,
    });
    const wasm = sizes.result.value.reduce((a, b) => a + b, 0);
    return { heapFound: found.usedSize, heapLive: live.usedSize, heapTotal: live.totalSize, wasm };
  });
}

function role(id) {
  if (id.includes("InspectorProxyWorker")) return "inspectorProxy";
  if (id.includes("ProxyWorker")) return "proxy";
  if (id.endsWith(`:${WORKER_NAME}`) || id === WORKER_NAME) return "worker";
  if (/d1/i.test(id)) return "d1";
  return "other";
}

async function sample(t, load) {
  const row = { t, ...load.takeWindow(), workerd: [], launcher: memoryOf(LAUNCHER), isolates: {} };
  for (const pid of processTree(LAUNCHER)) {
    const mem = memoryOf(pid);
    // `wrangler` is a node that starts the node that runs wrangler: count both.
    if (mem?.comm === "node" && row.launcher) {
      for (const k of ["rss", "anon", "file"]) row.launcher[k] += mem[k];
    }
    if (mem?.comm !== "workerd") continue;
    const port = inspectorPort(pid);
    const entry = { pid, rss: mem.rss, anon: mem.anon, file: mem.file, role: "user", isolates: port ? [] : null };
    if (port) {
      try {
        const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
        for (const target of list) {
          // Service bindings that wrangler implements in node (`core:custom-fetch:0:#NAME`):
          // a "#" cannot be sent in a WebSocket URL, and there is nothing of ours in them.
          if (target.id.includes("#")) continue;
          const r = role(target.id);
          if (r === "proxy" || r === "inspectorProxy") entry.role = "proxy";
          try {
            const s = await sampleIsolate(target.webSocketDebuggerUrl);
            entry.isolates.push({ id: target.id, role: r, ...s });
          } catch (e) {
            entry.isolates.push({ id: target.id, role: r, error: e.message });
          }
        }
      } catch (e) {
        entry.error = e.message;
      }
    }
    row.workerd.push(entry);
  }
  const sum = (role, field) => {
    const list = row.workerd.flatMap((w) => w.isolates ?? []).filter((i) => i.role === role && i[field] != null);
    return list.length ? list.reduce((a, i) => a + i[field], 0) : null;
  };
  for (const r of ["worker", "d1", "other", "inspectorProxy", "proxy"]) {
    const live = sum(r, "heapLive");
    if (live !== null) row.isolates[r] = { heapFound: sum(r, "heapFound"), heapLive: live, heapTotal: sum(r, "heapTotal"), wasm: sum(r, "wasm") };
  }
  row.userRss = row.workerd.find((w) => w.role === "user")?.rss ?? null;
  row.userAnon = row.workerd.find((w) => w.role === "user")?.anon ?? null;
  row.proxyRss = row.workerd.find((w) => w.role === "proxy")?.rss ?? null;
  return row;
}

// ---- report -------------------------------------------------------------------------------

const mib = (b) => (b === null || b === undefined ? "–" : (b / MIB).toFixed(1));
const ms = (v) => (v === null || v === undefined ? "–" : v.toFixed(1));

// [name, value of a sample, tolerance]. The live heap is measured after a full GC, so it is
// steady to within what the requests in flight hold: a quarter of a MiB tells a leak of a
// few hundred bytes per request within minutes. Resident memory moves with the load.
const SERIES = [
  ["workerd (Worker, D1, KV, DO) RSS", (r) => r.userRss, 16 * MIB],
  ["  of it anonymous", (r) => r.userAnon, 16 * MIB],
  ["workerd (wrangler's proxy) RSS", (r) => r.proxyRss, 16 * MIB],
  ["wrangler (node) RSS", (r) => r.launcher?.rss ?? null, 16 * MIB],
  ["Worker isolate JS heap, live", (r) => r.isolates.worker?.heapLive ?? null, MIB / 4],
  ["Worker wasm memory", (r) => r.isolates.worker?.wasm ?? null, MIB / 4],
  ["D1 isolate JS heap, live", (r) => r.isolates.d1?.heapLive ?? null, MIB / 4],
  ["InspectorProxyWorker JS heap, live", (r) => r.isolates.inspectorProxy?.heapLive ?? null, MIB / 4],
];

// Least squares slope of y over x.
function slope(points) {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return sxx > 0 ? points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / sxx : 0;
}

function verdicts(rows) {
  const during = rows.filter((r) => r.phase === "load");
  const third = SECONDS / 3;
  const out = [];
  for (const [name, get, tolerance] of SERIES) {
    const points = during.map((r) => ({ t: r.t, n: r.cumulative, v: get(r) })).filter((p) => p.v !== null);
    // The first sample counts as warm-up even when a short run takes it a little late.
    const warm = points.filter((p, i) => p.t <= third || i === 0).map((p) => p.v);
    const last = points.filter((p) => p.t >= 2 * third).map((p) => p.v);
    if (warm.length === 0 || last.length === 0) continue;
    const warmUp = Math.max(...warm);
    const [lastMin, lastMax] = [Math.min(...last), Math.max(...last)];
    const after = points.filter((p) => p.t > third);
    // Growing: the whole last third sits above the warm-up level. A load whose throughput
    // wanders moves resident memory up and down by more than any tolerance; a leak never
    // comes back down.
    const growing = lastMin > warmUp + Math.max(tolerance, 0.1 * warmUp);
    out.push({
      series: name, warmUp, lastMin, lastMax, verdict: growing ? "growing" : "flat",
      perMinute: slope(after.map((p) => [p.t / 60, p.v])),
      per1000Requests: slope(after.map((p) => [p.n / 1000, p.v])),
    });
  }
  return out;
}

function printTable(rows) {
  const head = [
    "t s", "phase", "req/s", "err", "p50 ms", "p99 ms",
    "workerd RSS MiB (anon)", "proxy workerd RSS", "node RSS",
    "Worker heap live / total MiB", "wasm MiB", "D1 heap live", "InspectorProxy heap live",
  ];
  console.log(`| ${head.join(" | ")} |`);
  console.log(`|${head.map(() => "---:").join("|")}|`);
  for (const r of rows) {
    const w = r.isolates.worker;
    const cells = [
      r.t.toFixed(0), r.phase, r.seconds ? (r.requests / r.seconds).toFixed(1) : "–", r.errors, ms(r.p50), ms(r.p99),
      `${mib(r.userRss)} (${mib(r.userAnon)})`, mib(r.proxyRss), mib(r.launcher?.rss),
      w ? `${mib(w.heapLive)} / ${mib(w.heapTotal)}` : "–", mib(w?.wasm), mib(r.isolates.d1?.heapLive),
      mib(r.isolates.inspectorProxy?.heapLive),
    ];
    console.log(`| ${cells.join(" | ")} |`);
  }
}

// ---- main ---------------------------------------------------------------------------------

const key = MIX === "mixed" ? await apiKey() : null;
const load = new Load(key);
const rows = [];
const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;
let last = 0;
const record = async (phase) => {
  const t = elapsed();
  const row = await sample(t, load);
  row.phase = phase;
  row.cumulative = load.total;
  row.seconds = t - last;
  last = t;
  rows.push(row);
  const w = row.isolates.worker;
  console.error(
    `soak ${LABEL} t=${t.toFixed(0)}s ${phase}: ${row.requests} req, ${row.errors} err; workerd ${mib(row.userRss)} MiB` +
      (row.proxyRss ? `, proxy workerd ${mib(row.proxyRss)} MiB` : "") +
      (w ? `; Worker heap ${mib(w.heapLive)} MiB live, wasm ${mib(w.wasm)} MiB` : "") +
      (row.isolates.inspectorProxy ? `; InspectorProxyWorker heap ${mib(row.isolates.inspectorProxy.heapLive)} MiB` : ""),
  );
};

console.error(`soak ${LABEL}: ${MIX} traffic at c=${CONCURRENCY} for ${SECONDS} s against ${BASE}, sampled every ${EVERY} s`);
await record("before");
const until = Date.now() + SECONDS * 1000;
const connections = Promise.all(Array.from({ length: CONCURRENCY }, (_, c) => load.connection(c, until)));
let loadDone = false;
connections.then(() => (loadDone = true));
while (!loadDone) {
  const nextAt = started + (last + EVERY) * 1000;
  await Promise.race([sleep(Math.max(0, nextAt - Date.now())), connections]);
  if (!loadDone) await record("load");
}
await connections;
await record("end");
// Once more after a pause: what a quiet Worker gives back.
await sleep(EVERY * 1000);
await record("after");

const seconds = elapsed();
console.log(`\n### Soak: ${LABEL} (${MIX} traffic, c=${CONCURRENCY}, ${SECONDS} s)\n`);
printTable(rows);
console.log(
  `\n${load.total} requests (${Object.entries(load.byKind).map(([k, v]) => `${k} ${v}`).join(", ")}), ` +
    `${Object.values(load.errors).reduce((a, e) => a + e.count, 0)} errors` +
    (load.streams.done + load.streams.notDone ? `; streams: ${load.streams.done} ended with done, ${load.streams.notDone} without` : ""),
);
for (const [k, e] of Object.entries(load.errors)) console.log(`  ${k}: ${e.count} (first: ${e.first})`);
const verdict = verdicts(rows);
console.log("\nAfter warm-up (the first third's highest sample against the last third's range):");
for (const v of verdict) {
  const delta = (b) =>
    `${b >= 0 ? "+" : "-"}${Math.abs(b) >= MIB ? `${(Math.abs(b) / MIB).toFixed(1)} MiB` : `${(Math.abs(b) / 1024).toFixed(0)} KiB`}`;
  console.log(
    `  ${v.verdict.padEnd(7)} ${v.series}: warm-up ${mib(v.warmUp)} MiB, last third ${mib(v.lastMin)}–${mib(v.lastMax)} MiB; ` +
      `after warm-up ${delta(v.perMinute)}/min, ${delta(v.per1000Requests)} per 1,000 requests`,
  );
}
const worker = verdict.filter((v) => v.series.startsWith("Worker "));
const growing = worker.filter((v) => v.verdict === "growing");
const isolate = worker.length === 0 ? null : growing.length ? "growing" : "flat";
if (worker.length) {
  console.log(
    growing.length
      ? `verdict: the Worker's isolate is GROWING after warm-up (${growing.map((v) => v.series).join(", ")})`
      : "verdict: the Worker's isolate is flat after warm-up",
  );
} else {
  console.log("verdict: the Worker's isolate was not sampled (wrangler's inspector holds it); see the resident memory above");
}

mkdirSync(RESULTS, { recursive: true });
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
const path = `${RESULTS}/soak-${LABEL}-${stamp}.json`;
writeFileSync(
  path,
  JSON.stringify(
    {
      label: LABEL, mix: MIX, concurrency: CONCURRENCY, seconds: SECONDS, sampleSeconds: EVERY, elapsed: seconds,
      requests: { total: load.total, byKind: load.byKind, errors: load.errors, streams: load.streams },
      isolate, verdict, samples: rows,
    },
    null,
    2,
  ),
);
console.log(`JSON: ${path}`);
