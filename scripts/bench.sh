#!/usr/bin/env bash
# `make bench`: the local stack with an instant LLM stand-in, then the benches (benches/gateway.rs,
# benches/streaming.rs, benches/knowledge.rs, benches/lifecycle.rs) and the soak
# (scripts/bench_soak.mjs).
#
# Started here, all stopped on exit:
#   - the LLM stand-in (tests/llm_stub.py, through scripts/bench_llm_stub.py);
#   - the Worker under test: the local runtime of `wrangler dev` without its DevTools inspector
#     and without watching (scripts/dev_worker.mjs --bench); its new workspaces each keep their
#     data in a database of their own (NEW_WORKSPACE_DATA_PLANE unset: `object`);
#   - for the gateway bench, a second one started the same way, with USAGE_LEDGER=off, for the
#     scenario that compares chat turns with the usage ledger on and off;
#   - for the gateway, streaming and knowledge benches, a third one started the same way, with
#     NEW_WORKSPACE_DATA_PLANE=d1: its new workspaces keep their data in the shared D1
#     database, as before each workspace had its own (the "D1 plane", ATTIVE_D1_PLANE_URL), so
#     each bench measures the two layouts side by side in one run;
#   - the same Worker under plain `wrangler dev` with its DevTools inspector, as `INSPECT=1 make
#     dev` runs it, for one scenario that shows what the inspector costs;
#   - the open-source Portkey gateway in front of the same stand-in, the peer the overhead is
#     compared with.
# All Workers run a copy of build/ taken now, so edits to src/ during a run change nothing.
#
# BENCH_REQUESTS (default 400) sets the requests per scenario and concurrency; BENCH_REQUESTS=40
# makes a quick run. BENCH_SCENARIOS (default: all) runs only the gateway bench's scenarios with
# those letters (see benches/gateway.rs), e.g. BENCH_SCENARIOS=o for a failed primary's cost,
# BENCH_SCENARIOS=s for the two data planes side by side.
# BENCH_SUITES (default "gateway streaming knowledge lifecycle soak") picks the benches;
# "gateway streaming knowledge lifecycle" leaves out the soak's 10 minutes. SOAK_SECONDS (default 600)
# sets the soak's length, SOAK_TARGETS (default "worker") what it soaks: "worker" is the
# Worker as the other benches run it, "wrangler-dev" the same under `wrangler dev` with its
# inspector; "worker wrangler-dev" soaks both, one after the other, each on fresh state.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SUITES=${BENCH_SUITES:-gateway streaming knowledge lifecycle soak}

# The load generators first: a compile error should stop the run before anything is started.
# (The soak's is a Node script: a soak alone needs no cargo.)
for bench in gateway streaming knowledge lifecycle; do
  if [[ $SUITES == *$bench* ]]; then cargo bench --quiet --bench "$bench" --no-run; fi
done

STATE=.state/bench
rm -rf "$STATE"
mkdir -p "$STATE/main" "$STATE/wrangler-dev" bench/results
cp -R build "$STATE/build"
# wrangler.toml without its [build] section (nothing to rebuild), reading the copy of build/;
# wrangler resolves the config's paths against the config's folder.
awk '/^\[/ { skip = ($0 == "[build]") } !skip' wrangler.toml |
  sed -e 's|^main = .*|main = "build/index.js"|' -e 's|^migrations_dir = "|migrations_dir = "../../|' \
    >"$STATE/wrangler.toml"
CONFIG=$STATE/wrangler.toml

python3 scripts/bench_llm_stub.py --port-file "$STATE/llm.port" >"$STATE/llm.log" 2>&1 &
STARTED_PIDS+=("$!")
for _ in $(seq 1 100); do
  [ -s "$STATE/llm.port" ] && break
  sleep 0.1
done
[ -s "$STATE/llm.port" ] || { echo "the LLM stand-in did not start; see $STATE/llm.log" >&2; exit 1; }
LLM_STUB_URL="http://127.0.0.1:$(cat "$STATE/llm.port")"
ADMIN_TOKEN="op_$(random_secret)"
umask 077
# Besides `default` (LLM_BASE_URL), a provider `flaky` at the stand-in's /flaky/v1, which the
# gateway bench's scenario (o) scripts to answer 503 at once, every time (its agents fall back
# from it to `default`). Every Worker of the run gets it, so all compare alike.
{
  printf 'ADMIN_TOKEN=%s\nLLM_BASE_URL=%s/v1\nEMBED_TOKEN_SECRET=%s\n' "$ADMIN_TOKEN" "$LLM_STUB_URL" "$(random_secret)"
  printf "LLM_PROVIDERS='%s'\n" "{\"flaky\": {\"wire\": \"openai\", \"baseUrl\": \"$LLM_STUB_URL/flaky/v1\"}}"
} >"$STATE/runtime.vars"
umask 022

PORT=$(free_port)
apply_migrations "$STATE/main" "$CONFIG"
node scripts/dev_worker.mjs "$CONFIG" "$PORT" "$(realpath "$STATE/main")" "$(realpath "$STATE/runtime.vars")" --bench \
  >"$STATE/main/worker.log" 2>&1 &
MAIN_PID=$!
STARTED_PIDS+=("$MAIN_PID")
wait_healthy "http://127.0.0.1:$PORT" "$MAIN_PID" "$STATE/main/worker.log"

# start_variant NAME LINE -> sets VARIANT_URL: the same Worker with one more line in its vars
# (the runtime.vars of the others, then LINE): the same copy of build/, its own state in
# $STATE/NAME, its own vars file $STATE/NAME.vars.
start_variant() {
  local name=$1 line=$2 port pid
  mkdir -p "$STATE/$name"
  umask 077
  { cat "$STATE/runtime.vars"; echo "$line"; } >"$STATE/$name.vars"
  umask 022
  port=$(free_port)
  apply_migrations "$STATE/$name" "$CONFIG"
  node scripts/dev_worker.mjs "$CONFIG" "$port" "$(realpath "$STATE/$name")" \
    "$(realpath "$STATE/$name.vars")" --bench >"$STATE/$name/worker.log" 2>&1 &
  pid=$!
  STARTED_PIDS+=("$pid")
  wait_healthy "http://127.0.0.1:$port" "$pid" "$STATE/$name/worker.log"
  VARIANT_URL="http://127.0.0.1:$port"
}

# The same Worker with the usage ledger switched off, for the gateway bench's scenario (l).
NO_LEDGER_URL=
if [[ $SUITES == *gateway* ]]; then
  start_variant no-ledger USAGE_LEDGER=off
  NO_LEDGER_URL=$VARIANT_URL
fi
# The same Worker on the D1 plane: the "before" of the gateway bench's scenario (s), (e) of the
# streaming bench, the second plane of the knowledge bench.
D1_PLANE_URL=
if [[ $SUITES == *gateway* || $SUITES == *streaming* || $SUITES == *knowledge* ]]; then
  start_variant d1-plane NEW_WORKSPACE_DATA_PLANE=d1
  D1_PLANE_URL=$VARIANT_URL
fi

DEV_PORT=$(free_port)
INSPECT=1 serve "$STATE/wrangler-dev" "$DEV_PORT" "$STATE/runtime.vars" "$CONFIG"

# Portkey's start-server.js takes --port but no address; the preload binds it to loopback.
# --headless: without its log console (a web UI fed with every request).
PORTKEY=node_modules/@portkey-ai/gateway
PORTKEY_VERSION=$(node -p "require('./$PORTKEY/package.json').version")
PORTKEY_URL="http://127.0.0.1:$(free_port)"
node --require ./scripts/bench_loopback.cjs "$PORTKEY/build/start-server.js" --port="${PORTKEY_URL##*:}" --headless \
  >"$STATE/portkey.log" 2>&1 &
STARTED_PIDS+=("$!")
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$PORTKEY_URL/" && break
  kill -0 "${STARTED_PIDS[-1]}" 2>/dev/null || { echo "the Portkey gateway exited; its log:" >&2; cat "$STATE/portkey.log" >&2; exit 1; }
  sleep 0.2
done
# One request through it, so a misconfiguration stops the run here rather than as errors.
curl -sf -o /dev/null -X POST "$PORTKEY_URL/v1/chat/completions" -H 'Content-Type: application/json' \
  -H 'x-portkey-provider: openai' -H "x-portkey-custom-host: $LLM_STUB_URL/v1" \
  -d '{"model":"bench","messages":[{"role":"user","content":"ready?"}]}' ||
  { echo "the Portkey gateway did not proxy to the stand-in; its log:" >&2; cat "$STATE/portkey.log" >&2; exit 1; }

wasm=$(find "$STATE/build" -path '*/.tmp' -prune -o -name '*.wasm' -print -quit)
export BENCH_WASM_RAW=$(stat -c %s "$wasm") BENCH_WASM_GZIP=$(gzip -9 -c "$wasm" | wc -c)
export ATTIVE_BASE_URL="http://127.0.0.1:$PORT" ATTIVE_WRANGLER_DEV_URL="http://127.0.0.1:$DEV_PORT"
export ATTIVE_NO_LEDGER_URL="$NO_LEDGER_URL" ATTIVE_D1_PLANE_URL="$D1_PLANE_URL"
export ATTIVE_ADMIN_TOKEN="$ADMIN_TOKEN" LLM_STUB_URL PORTKEY_URL PORTKEY_VERSION
export BENCH_OUTPUT="$PWD/bench/results/$(date -u +%Y%m%dT%H%M%SZ).json"
# The LiteLLM proxy, the peer of the gateway's scenario (v) (the same OpenAI API through three
# gateways) and of the streaming bench (installed into .tools/ on the first run only: about
# 750 MB).
if [[ $SUITES == *gateway* || $SUITES == *streaming* ]]; then
  eval "$(scripts/bench_litellm.sh "$LLM_STUB_URL" "$STATE/litellm")"
  STARTED_PIDS+=("$LITELLM_PID")
  export LITELLM_URL LITELLM_MASTER_KEY LITELLM_VERSION
fi
[[ $SUITES == *gateway* ]] && cargo bench --quiet --bench gateway

# Streaming: ours (on both planes) against the stand-in streaming 50 chunks, with LiteLLM as the
# peer, then how many open streams one Worker holds. Knowledge, once per plane: import
# throughput, retrieval with 50,000 records, noisy neighbours at rest and under load.
if [[ $SUITES == *streaming* ]]; then cargo bench --quiet --bench streaming; fi
if [[ $SUITES == *knowledge* ]]; then cargo bench --quiet --bench knowledge; fi
# Lifecycle: an operator backup of 50,000 records and 100,000 messages imported into a fresh
# workspace and exported back, timed, with the main Worker's workerd memory sampled (its
# process is found under the launcher's PID).
if [[ $SUITES == *lifecycle* ]]; then ATTIVE_WORKER_PID=$MAIN_PID cargo bench --quiet --bench lifecycle; fi

# Soak: SOAK_SECONDS of mixed traffic at c=8 against a Worker of its own (fresh state, so the
# run starts from a cold isolate), with workerd's resident memory and each isolate's JS heap
# and wasm memory sampled every 10 s (scripts/bench_soak.mjs). Its workerd is started through
# scripts/bench_workerd.sh, which gives it an inspector socket only the sampler uses.
# soak TARGET LABEL: a Worker of its own on fresh state, as the soak runs it, with
# the soak's traffic and sampling; SOAK_* in the environment pick the traffic.
soak() {
  local target=$1 label=$2 dir soak_port soak_pid
  dir=$STATE/soak-$label
  mkdir -p "$dir/inspect"
  SOAK_WORKERD=$(node -p "require('workerd').default")
  export SOAK_WORKERD SOAK_INSPECT_DIR MINIFLARE_WORKERD_PATH
  SOAK_INSPECT_DIR=$(realpath "$dir/inspect")
  MINIFLARE_WORKERD_PATH=$PWD/scripts/bench_workerd.sh
  soak_port=$(free_port)
  apply_migrations "$dir" "$CONFIG"
  case $target in
    worker)
      node scripts/dev_worker.mjs "$CONFIG" "$soak_port" "$(realpath "$dir")" "$(realpath "$STATE/runtime.vars")" --bench \
        >"$dir/worker.log" 2>&1 &
      soak_pid=$!
      STARTED_PIDS+=("$soak_pid")
      ;;
    wrangler-dev)
      INSPECT=1 start_worker "$dir" "$soak_port" "$STATE/runtime.vars" "$CONFIG"
      soak_pid=$WORKER_PID
      ;;
    *)
      echo "SOAK_TARGETS: unknown target '$target' (worker, wrangler-dev)" >&2
      exit 1
      ;;
  esac
  unset MINIFLARE_WORKERD_PATH
  wait_healthy "http://127.0.0.1:$soak_port" "$soak_pid" "$dir/worker.log"
  SOAK_BASE_URL="http://127.0.0.1:$soak_port" SOAK_LAUNCHER_PID=$soak_pid SOAK_LABEL=$label \
    BENCH_RESULTS=bench/results node --experimental-websocket --no-warnings scripts/bench_soak.mjs
  kill "$soak_pid" 2>/dev/null || true
  wait "$soak_pid" 2>/dev/null || true
}

# The Worker's own memory while it restores and exports a 50,000-record, 100,000-message
# workspace, over and over for BACKUP_SOAK_SECONDS (default 120), sampled as the soak does.
if [[ $SUITES == *lifecycle* ]]; then
  SOAK_MIX=backup SOAK_CONCURRENCY=1 SOAK_SAMPLE_SECONDS=5 SOAK_SECONDS=${BACKUP_SOAK_SECONDS:-120} soak worker backup
fi
if [[ $SUITES == *soak* ]]; then
  for target in ${SOAK_TARGETS:-worker}; do soak "$target" "$target"; done
fi
