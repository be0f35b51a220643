#!/usr/bin/env bash
# `make bench`: the local stack with an instant LLM stand-in, then benches/gateway.rs.
#
# Started here, all stopped on exit:
#   - the LLM stand-in (tests/llm_stub.py, through scripts/bench_llm_stub.py);
#   - the Worker under test: the local runtime of `wrangler dev` without its DevTools inspector
#     and without watching (scripts/dev_worker.mjs --bench);
#   - for the gateway bench, a second one started the same way, with USAGE_LEDGER=off, for the
#     scenario that compares chat turns with the usage ledger on and off;
#   - the same Worker under plain `wrangler dev` with its DevTools inspector, as `INSPECT=1 make
#     dev` runs it, for one scenario that shows what the inspector costs;
#   - the open-source Portkey gateway in front of the same stand-in, the peer the overhead is
#     compared with.
# All Workers run a copy of build/ taken now, so edits to src/ during a run change nothing.
#
# BENCH_REQUESTS (default 400) sets the requests per scenario and concurrency; BENCH_REQUESTS=40
# makes a quick run. BENCH_SCENARIOS (default: all) runs only the gateway bench's scenarios with
# those letters (see benches/gateway.rs), e.g. BENCH_SCENARIOS=o for a failed primary's cost.
# BENCH_SUITES (default "gateway streaming knowledge soak") picks the benches;
# "gateway streaming knowledge" leaves out the soak's 10 minutes. SOAK_SECONDS (default 600)
# sets the soak's length, SOAK_TARGETS (default "worker") what it soaks: "worker" is the
# Worker as the other benches run it, "wrangler-dev" the same under `wrangler dev` with its
# inspector; "worker wrangler-dev" soaks both, one after the other, each on fresh state.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SUITES=${BENCH_SUITES:-gateway streaming knowledge soak}

# The load generators first: a compile error should stop the run before anything is started.
# (The soak's is a Node script: a soak alone needs no cargo.)
for bench in gateway streaming knowledge; do
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
STARTED_PIDS+=("$!")
wait_healthy "http://127.0.0.1:$PORT" "$!" "$STATE/main/worker.log"

# The same Worker with the usage ledger switched off: the same copy of build/, its own state.
NO_LEDGER_URL=
if [[ $SUITES == *gateway* ]]; then
  mkdir -p "$STATE/no-ledger"
  umask 077
  { cat "$STATE/runtime.vars"; echo 'USAGE_LEDGER=off'; } >"$STATE/no-ledger.vars"
  umask 022
  NO_LEDGER_PORT=$(free_port)
  apply_migrations "$STATE/no-ledger" "$CONFIG"
  node scripts/dev_worker.mjs "$CONFIG" "$NO_LEDGER_PORT" "$(realpath "$STATE/no-ledger")" \
    "$(realpath "$STATE/no-ledger.vars")" --bench >"$STATE/no-ledger/worker.log" 2>&1 &
  STARTED_PIDS+=("$!")
  wait_healthy "http://127.0.0.1:$NO_LEDGER_PORT" "$!" "$STATE/no-ledger/worker.log"
  NO_LEDGER_URL="http://127.0.0.1:$NO_LEDGER_PORT"
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
export ATTIVE_NO_LEDGER_URL="$NO_LEDGER_URL"
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

# Streaming: ours against the stand-in streaming 50 chunks, with LiteLLM as the peer, then how
# many open streams one Worker holds. Knowledge: import throughput, retrieval with 50,000
# records, noisy neighbours.
if [[ $SUITES == *streaming* ]]; then cargo bench --quiet --bench streaming; fi
if [[ $SUITES == *knowledge* ]]; then cargo bench --quiet --bench knowledge; fi

# Soak: SOAK_SECONDS of mixed traffic at c=8 against a Worker of its own (fresh state, so the
# run starts from a cold isolate), with workerd's resident memory and each isolate's JS heap
# and wasm memory sampled every 10 s (scripts/bench_soak.mjs). Its workerd is started through
# scripts/bench_workerd.sh, which gives it an inspector socket only the sampler uses.
if [[ $SUITES == *soak* ]]; then
  SOAK_WORKERD=$(node -p "require('workerd').default")
  export SOAK_WORKERD
  for target in ${SOAK_TARGETS:-worker}; do
    dir=$STATE/soak-$target
    mkdir -p "$dir/inspect"
    export SOAK_INSPECT_DIR MINIFLARE_WORKERD_PATH
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
    SOAK_BASE_URL="http://127.0.0.1:$soak_port" SOAK_LAUNCHER_PID=$soak_pid SOAK_LABEL=$target \
      BENCH_RESULTS=bench/results node --experimental-websocket --no-warnings scripts/bench_soak.mjs
    kill "$soak_pid" 2>/dev/null || true
    wait "$soak_pid" 2>/dev/null || true
  done
fi
