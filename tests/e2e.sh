#!/usr/bin/env bash
# End-to-end harness: the Worker (wrangler dev, fresh local D1/KV/Durable Object state, free
# ports) and a scriptable LLM stand-in, started once per run, then the black-box suite in
# tests/e2e/ over HTTP. Each test makes its own workspace, so tests run in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

STATE=.state/e2e
rm -rf "$STATE"
mkdir -p "$STATE/main" "$STATE/legacy" "$STATE/bare" "$STATE/no-limiter" "$STATE/llm-down" "$STATE/limiter" "$STATE/dev" \
  "$STATE/providers" "$STATE/misconfigured"

start_llm_stub "$STATE"
ADMIN_TOKEN="op_$(random_secret)"
LLM_API_KEY="sk-test-$(random_secret)"
# Short deadlines keep the fault tests fast.
# Embed tokens: the current secret and the previous one (a rotation under way); the tests sign
# tokens with the previous one, and with one the Worker does not know.
EMBED_TOKEN_SECRET="embed-$(random_secret)"
EMBED_TOKEN_SECRET_PREVIOUS="embed-previous-$(random_secret)"
ADMIN_TOKEN=$ADMIN_TOKEN LLM_API_KEY=$LLM_API_KEY LLM_BASE_URL=$LLM_STUB_URL/v1 LLM_MODEL=stub-default-model \
  LLM_TIMEOUT_MS=3000 DEFAULT_INSTRUCTIONS="You are the default Attive test assistant." \
  EMBED_TOKEN_SECRET=$EMBED_TOKEN_SECRET EMBED_TOKEN_SECRET_PREVIOUS=$EMBED_TOKEN_SECRET_PREVIOUS \
  write_runtime_vars "$STATE/main/runtime.vars"
umask 077
# Degraded Workers: one as an operator who configured nothing (no D1, no Durable Object,
# no ADMIN_TOKEN), one whose rate-limiter Durable Object is missing, so every call to it fails.
echo "LLM_BASE_URL=$LLM_STUB_URL/v1" >"$STATE/bare/runtime.vars"
cp "$STATE/main/runtime.vars" "$STATE/no-limiter/runtime.vars"
# Workspaces made as before the split (rows in D1, keys of the first format), to be moved.
{ cat "$STATE/main/runtime.vars"; echo "NEW_WORKSPACE_DATA_PLANE='d1'"; } >"$STATE/legacy/runtime.vars"
# A Worker of its own for the tests that count the rate limiter's storage on disk, so no other
# test's keys add to the count (they take turns with the one other test that uses it). Its
# LLM_TIMEOUT_MS is longer than the 15 s ping interval, for the keep-alive test.
sed "s|^LLM_TIMEOUT_MS=.*|LLM_TIMEOUT_MS='25000'|" "$STATE/main/runtime.vars" >"$STATE/limiter/runtime.vars"
# And one whose LLM provider is down: nothing listens on its port.
sed "s|^LLM_BASE_URL=.*|LLM_BASE_URL=http://127.0.0.1:$(free_port)/v1|" "$STATE/main/runtime.vars" >"$STATE/llm-down/runtime.vars"
# A Worker with several providers (the stand-in plays each one under its own path): an
# Anthropic-wire one, a second OpenAI-wire one that is also the service's fallback, and one
# that is down. Its keys are secrets named by LLM_PROVIDERS.
ANTHROPIC_API_KEY="sk-ant-test-$(random_secret)"
BACKUP_API_KEY="sk-backup-test-$(random_secret)"
{
  cat "$STATE/main/runtime.vars"
  printf "LLM_PROVIDERS='%s'\n" "{\"claude\": {\"wire\": \"anthropic\", \"baseUrl\": \"$LLM_STUB_URL/claude/v1\", \"apiKeySecret\": \"ANTHROPIC_API_KEY\", \"maxTokens\": 1024}, \"backup\": {\"wire\": \"openai\", \"baseUrl\": \"$LLM_STUB_URL/backup/v1\", \"apiKeySecret\": \"BACKUP_API_KEY\"}, \"down\": {\"wire\": \"openai\", \"baseUrl\": \"http://127.0.0.1:$(free_port)/v1\"}}"
  printf "LLM_FALLBACKS='%s'\n" '[{"provider": "backup", "model": "global-backup"}]'
  printf "ANTHROPIC_API_KEY='%s'\nBACKUP_API_KEY='%s'\n" "$ANTHROPIC_API_KEY" "$BACKUP_API_KEY"
} >"$STATE/providers/runtime.vars"
# And one whose provider configuration cannot be used: every chat and the health check say so.
{
  cat "$STATE/main/runtime.vars"
  printf "LLM_PROVIDERS='%s'\n" '{"broken": {"wire": "gemini", "baseUrl": "https://example.invalid"}}'
} >"$STATE/misconfigured/runtime.vars"
umask 022

PORT=$(free_port)
serve "$STATE/main" "$PORT" "$STATE/main/runtime.vars"
BARE_PORT=$(free_port)
serve "$STATE/bare" "$BARE_PORT" "$STATE/bare/runtime.vars" tests/configs/bare.toml
LEGACY_PORT=$(free_port)
serve "$STATE/legacy" "$LEGACY_PORT" "$STATE/legacy/runtime.vars"
export ATTIVE_LEGACY_URL="http://127.0.0.1:$LEGACY_PORT" ATTIVE_MAIN_STATE="$PWD/$STATE/main"
NO_LIMITER_PORT=$(free_port)
serve "$STATE/no-limiter" "$NO_LIMITER_PORT" "$STATE/no-limiter/runtime.vars" tests/configs/no-limiter.toml

export ATTIVE_BASE_URL="http://127.0.0.1:$PORT" ATTIVE_BARE_URL="http://127.0.0.1:$BARE_PORT"
LLM_DOWN_PORT=$(free_port)
serve "$STATE/llm-down" "$LLM_DOWN_PORT" "$STATE/llm-down/runtime.vars"
LIMITER_PORT=$(free_port)
serve "$STATE/limiter" "$LIMITER_PORT" "$STATE/limiter/runtime.vars"
PROVIDERS_PORT=$(free_port)
serve "$STATE/providers" "$PROVIDERS_PORT" "$STATE/providers/runtime.vars"
MISCONFIGURED_PORT=$(free_port)
serve "$STATE/misconfigured" "$MISCONFIGURED_PORT" "$STATE/misconfigured/runtime.vars"
export ATTIVE_PROVIDERS_URL="http://127.0.0.1:$PROVIDERS_PORT" ATTIVE_MISCONFIGURED_URL="http://127.0.0.1:$MISCONFIGURED_PORT"
export ANTHROPIC_API_KEY BACKUP_API_KEY DEV_PROVIDER_KEY
export ATTIVE_LIMITER_URL="http://127.0.0.1:$LIMITER_PORT" ATTIVE_LIMITER_STATE="$PWD/$STATE/limiter"

# `make dev` itself (scripts/dev.sh), configured only through the environment the way the
# README says, so a test can check that every documented variable reaches the Worker.
DEV_PORT=$(free_port)
DEV_PROVIDER_KEY="sk-devp-test-$(random_secret)"
DEV_STATE=$STATE/dev PORT=$DEV_PORT ADMIN_TOKEN=$ADMIN_TOKEN LLM_BASE_URL=$LLM_STUB_URL/v1 \
  LLM_MODEL=dev-env-model LLM_TIMEOUT_MS=1500 CONTEXT_TOKEN_BUDGET=1200 RATE_LIMIT_PER_MINUTE=7 \
  LLM_STREAM_MAX_MS=4000 KNOWLEDGE_TOP_K=2 KNOWLEDGE_MAX_RECORDS=5 USAGE_LEDGER=off AGENT_MAX_STEPS=2 \
  DEFAULT_INSTRUCTIONS="Dev's instructions: answer in one line." \
  LLM_PROVIDERS="{\"devp\": {\"wire\": \"openai\", \"baseUrl\": \"$LLM_STUB_URL/devp/v1\", \"apiKeySecret\": \"DEV_PROVIDER_KEY\"}}" \
  LLM_FALLBACKS='[{"provider": "devp", "model": "dev-fallback"}]' DEV_PROVIDER_KEY=$DEV_PROVIDER_KEY \
  INSIGHTS_PER_TICK=3 TICK_SECONDS=3600 \
  scripts/dev.sh >"$STATE/dev/dev.log" 2>&1 &
STARTED_PIDS+=("$!")
for _ in $(seq 1 600); do
  grep -q "is running at" "$STATE/dev/dev.log" && break
  kill -0 "${STARTED_PIDS[-1]}" 2>/dev/null || { echo "make dev exited:" >&2; tail -30 "$STATE/dev/dev.log" >&2; exit 1; }
  sleep 0.2
done
grep -q "is running at" "$STATE/dev/dev.log" || { echo "make dev did not start:" >&2; tail -30 "$STATE/dev/dev.log" >&2; exit 1; }
export ATTIVE_DEV_URL="http://127.0.0.1:$DEV_PORT"
export ATTIVE_NO_LIMITER_URL="http://127.0.0.1:$NO_LIMITER_PORT" ATTIVE_LLM_DOWN_URL="http://127.0.0.1:$LLM_DOWN_PORT"
export ATTIVE_ADMIN_TOKEN="$ADMIN_TOKEN" LLM_STUB_URL LLM_API_KEY EMBED_TOKEN_SECRET_PREVIOUS
passed=0
failed=0
step() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
# While working on one part, E2E_SUITES picks suites and E2E_FILTER filters the Rust tests
# (e.g. `E2E_SUITES=rust E2E_FILTER=streaming tests/e2e.sh`); `make test` runs everything.
SUITES=${E2E_SUITES:-rust browser sdk fuzz}
[[ $SUITES == *rust* ]] && step cargo test --test e2e -- --test-threads 8 ${E2E_FILTER:-}
# The settings page and the embed widget in a real browser (Debian's Chromium, driven by
# playwright-core).
[[ $SUITES == *browser* ]] && step node --test --test-reporter=spec tests/browser/settings.test.mjs
# The embed widget on a customer's page: a host page on a second local origin.
[[ $SUITES == *browser* ]] && step node --test --test-reporter=spec tests/browser/embed.test.mjs
# The OpenAI SDKs, unmodified, against /v1: the Python package and the npm one (both pinned).
[[ $SUITES == *sdk* ]] && step .tools/venv/bin/python -W error::ResourceWarning tests/sdk/test_openai_python.py
[[ $SUITES == *sdk* ]] && step node --test --test-reporter=spec tests/sdk/openai_js.test.mjs
# Property-based fuzzing of every documented route (schemathesis, fixed seed, bounded).
[[ $SUITES == *fuzz* ]] && step tests/fuzz/run.sh "http://127.0.0.1:$PORT" "$ADMIN_TOKEN"

# SQLite's own check of the full-text index, through D1, on the database every test wrote to
# (records created, updated, deleted, workspaces deleted with their records).
fts_integrity() {
  # Every workspace's own database (object) of the main Worker, checked by SQLite itself.
  python3 - "$STATE/main" <<'PY'
import glob, os, sqlite3, sys
files = [f for f in glob.glob(os.path.join(sys.argv[1], "**", "*.sqlite"), recursive=True)
         if "-Workspace" in f and not f.endswith("metadata.sqlite")]
checked = 0
for f in files:
    db = sqlite3.connect(f, timeout=10)
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'knowledge_fts'").fetchone():
        db.execute("INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES('integrity-check', 1)")
        checked += 1
    db.close()
assert checked > 0, "no workspace database to check"
print(f"knowledge index: integrity-check passed in {checked} workspace databases")
PY
}
[[ $SUITES == *rust* ]] && step fts_integrity

# Secrets must never reach the logs: the operator token, the LLM key, and any API key or
# admin token (recognisable by their documented formats).
no_secret_in_logs() {
  if grep -qE "$ADMIN_TOKEN|$LLM_API_KEY|$EMBED_TOKEN_SECRET|$EMBED_TOKEN_SECRET_PREVIOUS|atvet_[0-9A-Za-z_-]{20}|$ANTHROPIC_API_KEY|$BACKUP_API_KEY|$DEV_PROVIDER_KEY|atv_[0-9A-Za-z]{36}|atvadm_[0-9A-Za-z]{36}" "$STATE"/*/worker.log; then
    echo "FAIL: a secret appears in a Worker log under $STATE" >&2
    return 1
  fi
  echo "Worker logs checked: no secret in $(cat "$STATE"/*/worker.log | wc -l) lines"
}
step no_secret_in_logs

echo "e2e suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
