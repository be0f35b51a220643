// The Worker for `make bench`: the same local runtime as `wrangler dev` (workerd, the
// ProxyWorker in front of it, local D1/KV/Durable Objects), started through wrangler's own
// API so that two things `wrangler dev` always does can be left out:
//   - its DevTools inspector: wrangler 4.86 enables the inspector's Network domain on the
//     Worker and forwards every event to the wrangler process over HTTP, about four per
//     subrequest. That triples the storage phases of POST /api/chat locally and is none of the
//     Worker's own cost (scripts/bench.sh measures it as a scenario of its own);
//   - watching: the Worker under test must not rebuild or reload during a run.
//
// Usage: node scripts/bench_worker.mjs CONFIG PORT PERSIST_DIR ENV_FILE
// Runs until SIGTERM or SIGINT; logs go to stdout.
import { unstable_startWorker } from "wrangler";

const [config, port, persist, envFile] = process.argv.slice(2);
if (!envFile) {
  console.error("usage: node scripts/bench_worker.mjs CONFIG PORT PERSIST_DIR ENV_FILE");
  process.exit(2);
}
const worker = await unstable_startWorker({
  config,
  envFiles: [envFile],
  dev: {
    server: { hostname: "127.0.0.1", port: Number(port) },
    inspector: false,
    persist,
    watch: false,
    logLevel: "info",
  },
});
await worker.ready;
console.log(`bench worker ready on ${(await worker.url).href}`);

const stop = async () => {
  setTimeout(() => process.exit(1), 5000).unref();
  await worker.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
