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

# apply_migrations STATE_DIR
apply_migrations() {
  CI=1 wrangler d1 migrations apply DB --local --persist-to "$1" >"$1/migrations.log" 2>&1 \
    || { cat "$1/migrations.log" >&2; return 1; }
}

# start_worker STATE_DIR PORT VARS_FILE -> sets WORKER_PID; logs to STATE_DIR/worker.log
start_worker() {
  local dir=$1 port=$2 vars=$3
  wrangler dev --local --ip 127.0.0.1 --port "$port" --inspector-port "$(free_port)" \
    --persist-to "$dir" --env-file "$vars" --show-interactive-dev-session=false \
    >"$dir/worker.log" 2>&1 &
  WORKER_PID=$!
  STARTED_PIDS+=("$WORKER_PID")
}

# serve STATE_DIR PORT VARS_FILE: migrations, the Worker, and wait until it answers.
serve() {
  apply_migrations "$1"
  start_worker "$1" "$2" "$3"
  wait_healthy "http://127.0.0.1:$2" "$WORKER_PID" "$1/worker.log"
}

# wait_healthy URL PID LOG
wait_healthy() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 1 600); do
    if curl -fsS "$url/api/health" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "the Worker exited; its log:" >&2; tail -50 "$log" >&2; return 1; }
    sleep 0.2
  done
  echo "the Worker did not become healthy in 120 s; its log:" >&2
  tail -50 "$log" >&2
  return 1
}
