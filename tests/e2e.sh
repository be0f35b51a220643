#!/usr/bin/env bash
# End-to-end harness: the Worker (wrangler dev, fresh local D1/KV/Durable Object state, free
# ports) and a scriptable LLM stand-in, started once per run, then the black-box suite in
# tests/e2e/ over HTTP. Each test makes its own workspace, so tests run in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

STATE=.state/e2e
rm -rf "$STATE"
mkdir -p "$STATE/main" "$STATE/bare" "$STATE/no-limiter" "$STATE/llm-down"

start_llm_stub "$STATE"
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
# Degraded Workers: one as an operator who configured nothing (no D1, no Durable Object,
# no ADMIN_TOKEN), one whose rate-limiter Durable Object is missing, so every call to it fails.
echo "LLM_BASE_URL=$LLM_STUB_URL/v1" >"$STATE/bare/runtime.vars"
cp "$STATE/main/runtime.vars" "$STATE/no-limiter/runtime.vars"
# And one whose LLM provider is down: nothing listens on its port.
sed "s|^LLM_BASE_URL=.*|LLM_BASE_URL=http://127.0.0.1:$(free_port)/v1|" "$STATE/main/runtime.vars" >"$STATE/llm-down/runtime.vars"
umask 022

PORT=$(free_port)
serve "$STATE/main" "$PORT" "$STATE/main/runtime.vars"
BARE_PORT=$(free_port)
serve "$STATE/bare" "$BARE_PORT" "$STATE/bare/runtime.vars" tests/configs/bare.toml
NO_LIMITER_PORT=$(free_port)
serve "$STATE/no-limiter" "$NO_LIMITER_PORT" "$STATE/no-limiter/runtime.vars" tests/configs/no-limiter.toml

export ATTIVE_BASE_URL="http://127.0.0.1:$PORT" ATTIVE_BARE_URL="http://127.0.0.1:$BARE_PORT"
LLM_DOWN_PORT=$(free_port)
serve "$STATE/llm-down" "$LLM_DOWN_PORT" "$STATE/llm-down/runtime.vars"
export ATTIVE_NO_LIMITER_URL="http://127.0.0.1:$NO_LIMITER_PORT" ATTIVE_LLM_DOWN_URL="http://127.0.0.1:$LLM_DOWN_PORT"
export ATTIVE_ADMIN_TOKEN="$ADMIN_TOKEN" LLM_STUB_URL LLM_API_KEY
passed=0
failed=0
step() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
step cargo test --test e2e -- --test-threads 8
# The settings page in a real browser (Debian's Chromium, driven by playwright-core).
step node --test --test-reporter=spec tests/browser/settings.test.mjs
# Property-based fuzzing of every documented route (schemathesis, fixed seed, bounded).
step tests/fuzz/run.sh "http://127.0.0.1:$PORT" "$ADMIN_TOKEN"

# Secrets must never reach the logs: the operator token, the LLM key, and any API key or
# admin token (recognisable by their documented formats).
no_secret_in_logs() {
  if grep -qE "$ADMIN_TOKEN|$LLM_API_KEY|atv_[0-9A-Za-z]{36}|atvadm_[0-9A-Za-z]{36}" "$STATE"/*/worker.log; then
    echo "FAIL: a secret appears in a Worker log under $STATE" >&2
    return 1
  fi
  echo "Worker logs checked: no secret in $(cat "$STATE"/*/worker.log | wc -l) lines"
}
step no_secret_in_logs

echo "e2e suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
