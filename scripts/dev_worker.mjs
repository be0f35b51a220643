// The local Worker of `make dev` (and of every Worker scripts/lib.sh starts) when INSPECT=1 is
// not set: what `wrangler dev` runs (workerd, the ProxyWorker in front of it, local
// D1/KV/Durable Objects, the config's custom build re-run on changes under its watch_dir), but
// without the DevTools inspector.
//
// Why: wrangler 4.86 has no flag to turn its inspector off. When it is on, wrangler attaches
// to the Worker's isolate with the Runtime and Network domains enabled, and its
// InspectorProxyWorker keeps every event it receives until a DevTools client connects, which
// it never does when nobody debugs: memory grows by tens of kilobytes per request in both
// workerd processes, without bound (README, "Memory under sustained load"). `INSPECT=1 make dev`
// runs plain `wrangler dev`, inspector and all, for when you want to debug.
//
// Usage: node scripts/dev_worker.mjs CONFIG PORT PERSIST_DIR ENV_FILE
// Runs until SIGTERM or SIGINT; logs (the Worker's own lines included) go to stdout.
import { unstable_startWorker } from "wrangler";

const [config, port, persist, envFile] = process.argv.slice(2);
if (!envFile) {
  console.error("usage: node scripts/dev_worker.mjs CONFIG PORT PERSIST_DIR ENV_FILE");
  process.exit(2);
}
const worker = await unstable_startWorker({
  config,
  envFiles: [envFile],
  dev: {
    server: { hostname: "127.0.0.1", port: Number(port) },
    inspector: false,
    persist,
    // As `wrangler dev`: a changed config restarts the Worker.
    watch: true,
    // "log", not "info": the Worker's console.log lines are at this level.
    logLevel: "log",
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
