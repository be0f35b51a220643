#!/usr/bin/env bash
# The deployable wasm must stay small: Workers load it on every cold start. Deterministic check
# on the built artefact, not a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_KIB=600
wasm=$(find build -name '*.wasm' -print -quit)
[ -n "$wasm" ] || { echo "size: no wasm under build/; run make build" >&2; exit 1; }
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "size: $wasm is $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzip (budget ${BUDGET_KIB} KiB gzip)"
if [ "$gz" -gt $((BUDGET_KIB * 1024)) ]; then
  echo "size: over budget" >&2
  exit 1
fi
