// The local Worker without wrangler's DevTools inspector: what `wrangler dev` runs (workerd,
// the ProxyWorker in front of it, local D1/KV/Durable Objects) through wrangler's own API.
// `make dev` and every Worker scripts/lib.sh starts use it when INSPECT=1 is not set, watching
// the config's custom build as `wrangler dev` does; `make bench` passes --bench: no watching
// (the Worker under test must not rebuild or reload during a run) and no per-request log lines.
//
// Why no inspector: wrangler 4.86 has no flag to turn it off. When it is on, wrangler attaches
// to the Worker's isolate with the Runtime and Network domains enabled, and its
// InspectorProxyWorker keeps every event it receives until a DevTools client connects, which
// it never does when nobody debugs: memory grows by tens of kilobytes per request in both
// workerd processes, without bound (README, "Memory under sustained load"), and every
// subrequest's events are forwarded to the wrangler process, which triples the storage phases
// of POST /api/chat locally. `INSPECT=1 make dev` runs plain `wrangler dev`, inspector and all.
//
// Usage: node scripts/dev_worker.mjs CONFIG PORT PERSIST_DIR ENV_FILE [--bench]
// Runs until SIGTERM or SIGINT; logs (the Worker's own lines included) go to stdout.
import { unstable_startWorker } from "wrangler";

const [config, port, persist, envFile, mode] = process.argv.slice(2);
if (!envFile || (mode !== undefined && mode !== "--bench")) {
  console.error("usage: node scripts/dev_worker.mjs CONFIG PORT PERSIST_DIR ENV_FILE [--bench]");
  process.exit(2);
}
const bench = mode === "--bench";
const worker = await unstable_startWorker({
  config,
  envFiles: [envFile],
  dev: {
    server: { hostname: "127.0.0.1", port: Number(port) },
    inspector: false,
    persist,
    // `GET /__scheduled` runs the Cron Trigger's handler, as `wrangler dev --test-scheduled`
    // does: `make dev` calls it every minute, the tests when they need a run.
    testScheduled: true,
    // As `wrangler dev`: a changed config restarts the Worker.
    watch: !bench,
    // "log", not "info": the Worker's console.log lines are at this level.
    logLevel: bench ? "info" : "log",
  },
});
await worker.ready;
console.log(`Ready on ${(await worker.url).href}, without the DevTools inspector (INSPECT=1 adds it)`);

const stop = async () => {
  setTimeout(() => process.exit(1), 5000).unref();
  await worker.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
