#!/usr/bin/env bash
# workerd as the soak bench starts it (miniflare runs it through MINIFLARE_WORKERD_PATH): the
# same binary, plus a DevTools inspector socket that nobody stays attached to, so that
# scripts/bench_soak.mjs can read each isolate's heap and wasm memory in short sessions.
#
# Why a wrapper: without wrangler's inspector, miniflare starts workerd with no inspector socket
# at all, and with it, wrangler's own session holds the Worker's isolate (workerd allows one
# session per isolate, and a new one evicts the old). A socket of our own leaves the first
# case measurable and the second undisturbed: when miniflare asks for an inspector itself, its
# workerd is started exactly as asked.
#
# Environment: SOAK_WORKERD, the real workerd binary; SOAK_INSPECT_DIR, where the inspector's
# port is written to a file named after this process's id (exec keeps the id).
set -euo pipefail
for arg in "$@"; do
  [[ $arg == --inspector-addr=* ]] && exec "$SOAK_WORKERD" "$@"
done
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
echo "$port" >"$SOAK_INSPECT_DIR/$$"
exec "$SOAK_WORKERD" "$@" "--inspector-addr=127.0.0.1:$port"
