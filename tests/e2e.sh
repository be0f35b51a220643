#!/usr/bin/env bash
# End-to-end harness: the Worker (wrangler dev, fresh local D1/KV/Durable Object state, free
# ports) and a scriptable LLM stand-in, started once per run, then the black-box suite in
# tests/e2e/ over HTTP. Each test makes its own workspace, so tests run in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

STATE=.state/e2e
rm -rf "$STATE"
mkdir -p "$STATE/main" "$STATE/bare"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start_llm_stub "$STATE"
PIDS+=("$LLM_STUB_PID")
ADMIN_TOKEN="op_$(random_secret)"
LLM_API_KEY="sk-test-$(random_secret)"
umask 077
cat >"$STATE/main/runtime.vars" <<VARS
ADMIN_TOKEN=$ADMIN_TOKEN
LLM_API_KEY=$LLM_API_KEY
LLM_BASE_URL=$LLM_STUB_URL/v1
LLM_MODEL=stub-default-model
LLM_TIMEOUT_MS=3000
DEFAULT_INSTRUCTIONS=You are the default Attive test assistant.
VARS
# A second Worker as an operator who has not set the secrets: no ADMIN_TOKEN at all.
echo "LLM_BASE_URL=$LLM_STUB_URL/v1" >"$STATE/bare/runtime.vars"
umask 022

PORT=$(free_port)
apply_migrations "$STATE/main"
start_worker "$STATE/main" "$PORT" "$STATE/main/runtime.vars"
PIDS+=("$WORKER_PID")
wait_healthy "http://127.0.0.1:$PORT" "$WORKER_PID" "$STATE/main/worker.log"

BARE_PORT=$(free_port)
apply_migrations "$STATE/bare"
start_worker "$STATE/bare" "$BARE_PORT" "$STATE/bare/runtime.vars"
PIDS+=("$WORKER_PID")
wait_healthy "http://127.0.0.1:$BARE_PORT" "$WORKER_PID" "$STATE/bare/worker.log"

export ATTIVE_BASE_URL="http://127.0.0.1:$PORT" ATTIVE_BARE_URL="http://127.0.0.1:$BARE_PORT"
export ATTIVE_ADMIN_TOKEN="$ADMIN_TOKEN" LLM_STUB_URL LLM_API_KEY
status=0
cargo test --test e2e -- --test-threads 8 || status=$?
# The settings page in a real browser (Debian's Chromium, driven by playwright-core).
node --test --test-reporter=spec tests/browser/settings.test.mjs || status=$?
# Property-based fuzzing of every documented route (schemathesis, fixed seed, bounded).
tests/fuzz/run.sh "http://127.0.0.1:$PORT" "$ADMIN_TOKEN" || status=$?

# Secrets must never reach the logs: the operator token, the LLM key, and any API key or
# admin token (recognisable by their documented formats).
if grep -qE "$ADMIN_TOKEN|$LLM_API_KEY|atv_[0-9A-Za-z]{36}|atvadm_[0-9A-Za-z]{36}" "$STATE/main/worker.log"; then
  echo "FAIL: a secret appears in the Worker log ($STATE/main/worker.log)" >&2
  status=1
else
  echo "Worker log checked: no secret in $(wc -l <"$STATE/main/worker.log") lines"
fi
exit $status
