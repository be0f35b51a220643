#!/usr/bin/env bash
# The LiteLLM proxy, the streaming peer of benches/streaming.rs, in front of the LLM stand-in.
#
# Usage: scripts/bench_litellm.sh STUB_URL STATE_DIR
#   STUB_URL   the stand-in's address, e.g. http://127.0.0.1:PORT (without /v1)
#   STATE_DIR  where the config (litellm.yaml) and the log (litellm.log) go
#
# Installs PyPI's litellm[proxy] at the pinned version into .tools/litellm-venv when it is not
# there yet (about 750 MB, a minute or two; later runs skip it), starts the proxy on a free
# loopback port, waits until it answers, and prints shell assignments for `eval`:
#   LITELLM_URL=http://127.0.0.1:PORT LITELLM_PORT=PORT LITELLM_PID=PID
#   LITELLM_MASTER_KEY=sk-bench-... LITELLM_VERSION=1.108.7
# The proxy keeps running after this script exits: the caller stops it (kill "$LITELLM_PID").
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 STUB_URL STATE_DIR" >&2; exit 2; }
stub_url=${1%/}
# Resolved before the cd below: STATE_DIR is relative to the caller's directory.
mkdir -p "$2"
state=$(cd "$2" && pwd)
cd "$(dirname "$0")/.."

LITELLM_VERSION=1.108.7
VENV=.tools/litellm-venv

installed() {
  "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("litellm") != sys.argv[1])' \
    "$LITELLM_VERSION" 2>/dev/null
}
if ! installed; then
  # A half-made venv (an interrupted install) is rebuilt rather than patched.
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input "litellm[proxy]==$LITELLM_VERSION" \
    >"$state/litellm-install.log" 2>&1 || { cat "$state/litellm-install.log" >&2; exit 1; }
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
port=$(free_port)
master_key="sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
config=$state/litellm.yaml
log=$state/litellm.log

# The config holds the master key: private to this user.
umask 077
cat >"$config" <<EOF
model_list:
  - model_name: stub
    litellm_params:
      model: openai/stub-model
      api_base: $stub_url/v1
      api_key: anything
general_settings:
  master_key: $master_key
EOF
umask 022

# Offline, and nothing in the way of the measurement:
#   LITELLM_TELEMETRY / LITELLM_TELEMETRY_DISABLED  the old usage ping and the new telemetry veto;
#   LITELLM_LOCAL_MODEL_COST_MAP          the bundled price map, not the one on GitHub (fetched at
#                                         import otherwise, and retried in the background);
#   LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS, LITELLM_LOCAL_BLOG_POSTS  the same for two other files
#                                         it would fetch from the internet;
#   LITELLM_LOG=ERROR                     no per-request log lines on the hot path;
#   DISABLE_ADMIN_UI, NO_DOCS             the web UI and the API docs are not under test.
# setsid: its own process group, so the caller's terminal signals do not reach it and the caller
# stops exactly this PID.
env LITELLM_TELEMETRY=False LITELLM_TELEMETRY_DISABLED=true LITELLM_LOCAL_MODEL_COST_MAP=True \
  LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True LITELLM_LOCAL_BLOG_POSTS=True LITELLM_LOG=ERROR \
  DISABLE_ADMIN_UI=True NO_DOCS=True \
  setsid "$VENV/bin/litellm" --config "$config" --host 127.0.0.1 --port "$port" </dev/null >"$log" 2>&1 &
pid=$!

# Ready once an authenticated completion goes through, so a misconfiguration fails here.
url="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  if curl -sf -o /dev/null -X POST "$url/v1/chat/completions" -H "Authorization: Bearer $master_key" \
    -H 'Content-Type: application/json' -d '{"model":"stub","messages":[{"role":"user","content":"ready?"}]}'; then
    printf 'LITELLM_URL=%s LITELLM_PORT=%s LITELLM_PID=%s LITELLM_MASTER_KEY=%s LITELLM_VERSION=%s\n' \
      "$url" "$port" "$pid" "$master_key" "$LITELLM_VERSION"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { echo "the LiteLLM proxy exited; its log:" >&2; tail -50 "$log" >&2; exit 1; }
  sleep 0.2
done
echo "the LiteLLM proxy did not answer in 60 s; its log:" >&2
tail -50 "$log" >&2
kill "$pid" 2>/dev/null || true
exit 1
