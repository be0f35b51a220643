# Shared by dev.sh, bench.sh and tests/e2e.sh: start the LLM stand-in and the Worker, wait for
# them, and stop everything that was started when the script exits.

STARTED_PIDS=()
stop_started() {
  for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_started EXIT INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

random_secret() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
}

# Every variable of the README's configuration table (vars and secrets). `make dev` passes each
# one that is set in the environment to the Worker; keep this list and the table in step.
CONFIG_VARS=(LLM_BASE_URL LLM_MODEL LLM_TIMEOUT_MS LLM_STREAM_MAX_MS CONTEXT_TOKEN_BUDGET RATE_LIMIT_PER_MINUTE
  DEFAULT_INSTRUCTIONS KNOWLEDGE_TOP_K KNOWLEDGE_MAX_RECORDS USAGE_LEDGER AGENT_MAX_STEPS ADMIN_TOKEN LLM_API_KEY
  LLM_PROVIDERS LLM_FALLBACKS EMBED_TOKEN_SECRET EMBED_TOKEN_SECRET_PREVIOUS INSIGHTS_PER_TICK)

# The secrets LLM_PROVIDERS names (each provider's "apiKeySecret"), so `make dev` passes them
# too. Nothing when LLM_PROVIDERS is unset or not JSON (the Worker then says what is wrong).
provider_secret_names() {
  [ -n "${LLM_PROVIDERS:-}" ] || return 0
  python3 - <<'PY' 2>/dev/null || true
import json, os, re
for spec in json.loads(os.environ["LLM_PROVIDERS"]).values():
    name = spec.get("apiKeySecret") if isinstance(spec, dict) else None
    if isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        print(name)
PY
}

# write_runtime_vars FILE: the configuration variables set in the environment, as a private
# env file for `wrangler dev --env-file` (secrets never go on a command line, which wrangler
# prints). Values are single-quoted (taken literally); a value with a newline or a single quote
# is double-quoted with its newlines written as \n, which the env-file reader turns back.
write_runtime_vars() {
  local file=$1 name value
  umask 077
  : >"$file"
  for name in "${CONFIG_VARS[@]}" $(provider_secret_names); do
    [ -n "${!name:-}" ] || continue
    value=${!name}
    if [[ $value == *$'\n'* || $value == *"'"* ]]; then
      value=${value//$'\n'/\\n}
      printf '%s="%s"\n' "$name" "$value" >>"$file"
    else
      printf "%s='%s'\n" "$name" "$value" >>"$file"
    fi
  done
  umask 022
}

# start_llm_stub STATE_DIR -> sets LLM_STUB_PID and LLM_STUB_URL
start_llm_stub() {
  local dir=$1
  rm -f "$dir/llm.port"
  python3 tests/llm_stub.py --port-file "$dir/llm.port" >"$dir/llm.log" 2>&1 &
  LLM_STUB_PID=$!
  STARTED_PIDS+=("$LLM_STUB_PID")
  for _ in $(seq 1 100); do
    [ -s "$dir/llm.port" ] && break
    sleep 0.1
  done
  [ -s "$dir/llm.port" ] || { echo "the LLM stand-in did not start; see $dir/llm.log" >&2; return 1; }
  LLM_STUB_URL="http://127.0.0.1:$(cat "$dir/llm.port")"
}

# apply_migrations STATE_DIR [CONFIG]
apply_migrations() {
  CI=1 wrangler d1 migrations apply DB --local --persist-to "$(realpath "$1")" --config "${2:-wrangler.toml}" \
    >"$1/migrations.log" 2>&1 || { cat "$1/migrations.log" >&2; return 1; }
}

# start_worker STATE_DIR PORT VARS_FILE [CONFIG] -> sets WORKER_PID; logs to STATE_DIR/worker.log
# Without the DevTools inspector (scripts/dev_worker.mjs says why), unless INSPECT=1: then
# plain `wrangler dev`, with the inspector on INSPECTOR_PORT (default: a free port).
start_worker() {
  # Absolute paths: wrangler resolves some of them against the config file's folder.
  local dir port=$2 vars config=${4:-wrangler.toml}
  dir=$(realpath "$1")
  vars=$(realpath "$3")
  if [ "${INSPECT:-}" = 1 ]; then
    wrangler dev --local --test-scheduled --ip 127.0.0.1 --port "$port" --inspector-port "${INSPECTOR_PORT:-$(free_port)}" \
      --config "$config" --persist-to "$dir" --env-file "$vars" --show-interactive-dev-session=false \
      >"$dir/worker.log" 2>&1 &
  else
    node scripts/dev_worker.mjs "$config" "$port" "$dir" "$vars" >"$dir/worker.log" 2>&1 &
  fi
  WORKER_PID=$!
  STARTED_PIDS+=("$WORKER_PID")
}

# serve STATE_DIR PORT VARS_FILE [CONFIG]: migrations, the Worker, and wait until it answers.
serve() {
  if grep -q d1_databases "${4:-wrangler.toml}"; then apply_migrations "$1" "${4:-}"; fi
  start_worker "$1" "$2" "$3" "${4:-}"
  wait_healthy "http://127.0.0.1:$2" "$WORKER_PID" "$1/worker.log"
}

# wait_healthy URL PID LOG: until the Worker answers its health check at all (a Worker without
# D1 answers it with 503, one whose provider configuration is unusable with 500: both are up).
wait_healthy() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 1 600); do
    case "$(curl -s -o /dev/null -w '%{http_code}' "$url/api/health" 2>/dev/null)" in
      200 | 500 | 503) return 0 ;;
    esac
    kill -0 "$pid" 2>/dev/null || { echo "the Worker exited; its log:" >&2; tail -50 "$log" >&2; return 1; }
    sleep 0.2
  done
  echo "the Worker did not become healthy in 120 s; its log:" >&2
  tail -50 "$log" >&2
  return 1
}
