#!/usr/bin/env bash
# `make dev`: the LLM stand-in (unless LLM_BASE_URL is set) and the Worker on
# 127.0.0.1:${PORT:-8787}, with local D1, KV and Durable Objects persisted under .state/dev
# (DEV_STATE picks another folder). Every variable of the README's configuration table that is
# set in the environment reaches the Worker. The Cron Trigger runs every minute, as deployed.
# The first start also creates a demo workspace,
# its admin and an API key. The Worker runs without wrangler's DevTools inspector, whose
# memory grows with every request; INSPECT=1 runs plain `wrangler dev` with it, on
# INSPECTOR_PORT (default 9229).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

PORT=${PORT:-8787}
STATE=${DEV_STATE:-.state/dev}
if [ "${INSPECT:-}" = 1 ]; then
  export INSPECTOR_PORT=${INSPECTOR_PORT:-9229}
fi
mkdir -p "$STATE"

# dev_secret NAME VALUE: NAME from the environment, else the one generated into .dev.vars
# once (VALUE), so restarts reuse it.
dev_secret() {
  local name=$1 fresh=$2
  if [ -n "${!name:-}" ]; then return 0; fi
  if [ -f .dev.vars ] && grep -q "^$name=" .dev.vars; then
    printf -v "$name" '%s' "$(sed -n "s/^$name=//p" .dev.vars | head -n1)"
  else
    printf -v "$name" '%s' "$fresh"
    echo "$name=$fresh" >>.dev.vars
    chmod 600 .dev.vars
    echo "Generated $name into .dev.vars"
  fi
}
# The operator token, and the secret embed tokens are signed with.
dev_secret ADMIN_TOKEN "op_$(random_secret)"
dev_secret EMBED_TOKEN_SECRET "$(random_secret)"

if [ -z "${LLM_BASE_URL:-}" ] && [ "${LLM:-}" = local ]; then
  # A real small model instead of the stand-in (installed into .tools/ on first use).
  LLM_LOCAL=$(scripts/llm_local.sh "$STATE")
  eval "$LLM_LOCAL"
  STARTED_PIDS+=("$LLM_LOCAL_PID")
  # Its context is 8,192 tokens and it reads ~150 tokens/s: keep the history short.
  CONTEXT_TOKEN_BUDGET=${CONTEXT_TOKEN_BUDGET:-2000}
  echo "LLM: $LLM_MODEL on llama.cpp at $LLM_BASE_URL (log: $STATE/llm-local.log)"
elif [ -z "${LLM_BASE_URL:-}" ]; then
  start_llm_stub "$STATE"
  LLM_BASE_URL="$LLM_STUB_URL/v1"
  echo "LLM stand-in: $LLM_BASE_URL (set LLM_BASE_URL, LLM_MODEL and LLM_API_KEY to use a real provider, or LLM=local for a real small model)"
fi

VARS="$STATE/runtime.vars"
export ADMIN_TOKEN LLM_BASE_URL EMBED_TOKEN_SECRET
write_runtime_vars "$VARS"

serve "$STATE" "$PORT" "$VARS"
BASE="http://127.0.0.1:$PORT"

# The Cron Trigger, as production runs it: once a minute (locally through /__scheduled;
# TICK_SECONDS changes the interval, e.g. for a test that runs the job itself).
(while sleep "${TICK_SECONDS:-60}"; do curl -s -o /dev/null "$BASE/__scheduled?cron=*+*+*+*+*" || true; done) &
STARTED_PIDS+=("$!")

python3 scripts/bootstrap_demo.py "$BASE" "$ADMIN_TOKEN" "$STATE/demo.json"
if [ "${INSPECT:-}" = 1 ]; then
  echo "DevTools inspector: 127.0.0.1:$INSPECTOR_PORT (chrome://inspect; ws://127.0.0.1:$INSPECTOR_PORT/ws)"
else
  echo "DevTools inspector: off (INSPECT=1 make dev turns it on)"
fi
echo "Worker log: $STATE/worker.log   (Ctrl-C stops everything)"
wait "$WORKER_PID"
