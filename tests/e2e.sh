#!/usr/bin/env bash
# End-to-end harness: one Worker (wrangler dev, fresh local D1/KV/Durable Object state, free
# ports) and one scriptable LLM stand-in per run, then the black-box suite in tests/e2e/ over
# HTTP. Each test makes its own workspace, so tests run in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

STATE=.state/e2e
rm -rf "$STATE"
mkdir -p "$STATE"

cleanup() {
  [ -n "${WORKER_PID:-}" ] && kill "$WORKER_PID" 2>/dev/null
  [ -n "${LLM_STUB_PID:-}" ] && kill "$LLM_STUB_PID" 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start_llm_stub "$STATE"
ADMIN_TOKEN="op_$(random_secret)"
LLM_API_KEY="sk-test-$(random_secret)"
PORT=$(free_port)
umask 077
cat >"$STATE/runtime.vars" <<VARS
ADMIN_TOKEN=$ADMIN_TOKEN
LLM_API_KEY=$LLM_API_KEY
LLM_BASE_URL=$LLM_STUB_URL/v1
LLM_MODEL=stub-default-model
LLM_TIMEOUT_MS=3000
DEFAULT_INSTRUCTIONS=You are the default Attive test assistant.
VARS
umask 022

apply_migrations "$STATE"
start_worker "$STATE" "$PORT" "$STATE/runtime.vars"
BASE="http://127.0.0.1:$PORT"
wait_healthy "$BASE" "$WORKER_PID" "$STATE/worker.log"

export ATTIVE_BASE_URL="$BASE" ATTIVE_ADMIN_TOKEN="$ADMIN_TOKEN" LLM_STUB_URL LLM_API_KEY
status=0
cargo test --test e2e -- --test-threads 8 || status=$?

# Secrets must never reach the logs: the operator token, the LLM key, and any API key or
# admin token (recognisable by their documented formats).
if grep -qE "$ADMIN_TOKEN|$LLM_API_KEY|atv_[0-9A-Za-z]{36}|atvadm_[0-9A-Za-z]{36}" "$STATE/worker.log"; then
  echo "FAIL: a secret appears in the Worker log ($STATE/worker.log)" >&2
  status=1
else
  echo "Worker log checked: no secret in $(wc -l <"$STATE/worker.log") lines"
fi
exit $status
