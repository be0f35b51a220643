#!/usr/bin/env bash
# Installs what the project needs and is missing; quick and silent when everything is there.
# Everything lands inside the project (.tools/, node_modules/), pinned to the versions below.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
# wasm-bindgen-cli must match the wasm-bindgen crate exactly; Cargo.toml pins the crate.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
TOOLS="$PWD/.tools"

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required but not installed ($2)" >&2; exit 1; }; }
need cargo "install Rust with rustup"
need rustup "install Rust with rustup"
need node "install Node.js 20"
need npm "install Node.js 20 with npm"
need python3 "install Python 3"
need make "install GNU make"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
for component in rustfmt clippy; do
  rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done

if ! "$TOOLS/bin/worker-build" --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  echo "setup: installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install --quiet --root "$TOOLS" worker-build --version "$WORKER_BUILD_VERSION"
fi
if ! "$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  echo "setup: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install --quiet --force --root "$TOOLS" wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
fi

# npm ci only when the lock file changed since the last install.
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing the npm tools: wrangler, esbuild, binaryen, playwright-core, the Portkey gateway for make bench (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Schemathesis (fuzzing against openapi.json) in a project-local virtual environment.
SCHEMATHESIS_VERSION=4.32.5
if [ "${1:-}" = "--test-tools" ] && ! .tools/venv/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "setup: installing schemathesis $SCHEMATHESIS_VERSION into .tools/venv"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# The official OpenAI Python SDK, which the tests drive /v1 with, unmodified (the npm one is in
# package.json).
OPENAI_PYTHON_VERSION=3.60.0
if [ "${1:-}" = "--test-tools" ] && ! .tools/venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('openai') != sys.argv[1])" "$OPENAI_PYTHON_VERSION" 2>/dev/null; then
  echo "setup: installing the openai Python package $OPENAI_PYTHON_VERSION into .tools/venv"
  .tools/venv/bin/pip install --quiet --disable-pip-version-check "openai==$OPENAI_PYTHON_VERSION"
fi

# The browser test of the settings page drives Debian's Chromium (no browser download).
if [ "${1:-}" = "--test-tools" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium for the browser test"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
