#!/usr/bin/env bash
# The bundle must deploy and stay small: Workers load it on every cold start. `wrangler deploy
# --dry-run` builds the very bundle a deploy would upload (bindings, migrations, the wasm)
# without an account; a config or bundle that would not deploy fails here. Its reported
# upload size is the budgeted number. Deterministic: a check on the artefact, not a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_KIB=700
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
log=$(wrangler deploy --dry-run --outdir "$out" 2>&1) || { echo "$log" >&2; echo "size: the deploy dry run failed" >&2; exit 1; }
line=$(grep -o 'Total Upload: .*' <<<"$log" || true)
[ -n "$line" ] || { echo "$log" >&2; echo "size: the dry run reported no upload size" >&2; exit 1; }
gzip_kib=$(sed -E 's/.*gzip: ([0-9.]+) KiB.*/\1/' <<<"$line")
wasm=$(find "$out" -name '*.wasm' -print -quit)
echo "size: deploy dry run ok; $line (budget ${BUDGET_KIB} KiB gzip); wasm $(($(stat -c %s "$wasm") / 1024)) KiB raw"
if awk -v g="$gzip_kib" -v b="$BUDGET_KIB" 'BEGIN { exit !(g > b) }'; then
  echo "size: over budget" >&2
  exit 1
fi
