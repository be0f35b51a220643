#!/usr/bin/env bash
# `make bench`: the local stack with an instant LLM stand-in, then benches/gateway.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

STATE=.state/bench
rm -rf "$STATE"
mkdir -p "$STATE" bench/results
start_llm_stub "$STATE"
ADMIN_TOKEN="op_$(random_secret)"
umask 077
printf 'ADMIN_TOKEN=%s\nLLM_BASE_URL=%s/v1\n' "$ADMIN_TOKEN" "$LLM_STUB_URL" >"$STATE/runtime.vars"
umask 022
PORT=$(free_port)
serve "$STATE" "$PORT" "$STATE/runtime.vars"

wasm=$(find build -name '*.wasm' -print -quit)
export BENCH_WASM_RAW=$(stat -c %s "$wasm") BENCH_WASM_GZIP=$(gzip -9 -c "$wasm" | wc -c)
export ATTIVE_BASE_URL="http://127.0.0.1:$PORT" ATTIVE_ADMIN_TOKEN="$ADMIN_TOKEN" LLM_STUB_URL
export BENCH_OUTPUT="$PWD/bench/results/$(date -u +%Y%m%dT%H%M%SZ).json"
cargo bench --bench gateway
