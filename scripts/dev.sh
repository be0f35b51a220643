#!/usr/bin/env bash
# `make dev`: the LLM stand-in (unless LLM_BASE_URL is set) and the Worker on
# 127.0.0.1:${PORT:-8787}, with local D1, KV and Durable Objects persisted under .state/dev
# (DEV_STATE picks another folder). Every variable of the README's configuration table that is
# set in the environment reaches the Worker. The first start also creates a demo workspace,
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

# The operator token: from the environment, else the one generated into .dev.vars once.
if [ -z "${ADMIN_TOKEN:-}" ]; then
  if [ -f .dev.vars ] && grep -q '^ADMIN_TOKEN=' .dev.vars; then
    ADMIN_TOKEN=$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars | head -n1)
  else
    ADMIN_TOKEN="op_$(random_secret)"
    echo "ADMIN_TOKEN=$ADMIN_TOKEN" >>.dev.vars
    chmod 600 .dev.vars
    echo "Generated an operator ADMIN_TOKEN into .dev.vars"
  fi
fi

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
export ADMIN_TOKEN LLM_BASE_URL
write_runtime_vars "$VARS"

serve "$STATE" "$PORT" "$VARS"
BASE="http://127.0.0.1:$PORT"

python3 scripts/bootstrap_demo.py "$BASE" "$ADMIN_TOKEN" "$STATE/demo.json"
if [ "${INSPECT:-}" = 1 ]; then
  echo "DevTools inspector: 127.0.0.1:$INSPECTOR_PORT (chrome://inspect; ws://127.0.0.1:$INSPECTOR_PORT/ws)"
else
  echo "DevTools inspector: off (INSPECT=1 make dev turns it on)"
fi
echo "Worker log: $STATE/worker.log   (Ctrl-C stops everything)"
wait "$WORKER_PID"
