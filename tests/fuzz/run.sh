#!/usr/bin/env bash
# Schemathesis against the running service: bounded (fixed examples per operation, fixed seed),
# all phases including stateful links (create → use → delete). Checks: no 5xx, responses
# conform to the documented schemas and status codes, JSON content types, and the required
# X-Request-Id header. Any schemathesis warning fails the run (schemathesis.toml), and so does
# an operation that never answered 2xx (coverage.py): a run that never got past
# authentication or validation proves nothing, so it must not pass.
# Usage: tests/fuzz/run.sh BASE_URL OPERATOR_TOKEN
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=$1
export FUZZ_OPERATOR_TOKEN=$2
REPORTS=$(mktemp -d)
trap 'rm -rf "$REPORTS"' EXIT

# A workspace of the fuzzer's own, with an admin and a key at the highest limit there is, so the
# run is never throttled, a spare key, and an insight, so the insight routes have one to read
# from the start (its first answer is generated in the background, as for any new insight).
# Nothing in the run can take them away: the admin and chat routes cannot delete admins or
# workspaces, hooks.py keeps the key from deleting, editing or rolling itself (edits and rolls
# aimed at it go to the spare instead, so they still succeed) and the insight from being
# deleted, and the operator routes, which list every workspace and may delete any, run last
# and on their own.
# First, the Worker must serve the repository's openapi.json: else the build is stale and the
# run would test an outdated contract.
read -r FUZZ_ADMIN_TOKEN FUZZ_API_KEY FUZZ_API_KEY_ID FUZZ_SPARE_KEY_ID FUZZ_INSIGHT_ID < <(python3 - "$BASE" "$FUZZ_OPERATOR_TOKEN" <<'PY'
import json, sys, urllib.request
base, op = sys.argv[1:3]
def call(path, token=None, body=None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="GET" if body is None else "POST", headers=headers)
    return json.load(urllib.request.urlopen(req))
if call("/api/openapi.json") != json.load(open("openapi.json", encoding="utf-8")):
    sys.exit("fuzz: the Worker serves another openapi.json than the repository's; rebuild it (make build)")
ws = call("/api/admin/workspaces", op, {"name": "fuzz"})
admin = call(f"/api/admin/workspaces/{ws['id']}/admins", op, {"name": "Fuzz", "email": "fuzz@example.com"})
key = call("/api/settings/api-keys", admin["token"], {"name": "fuzz", "rateLimitPerMinute": 100000})
spare = call("/api/settings/api-keys", admin["token"], {"name": "fuzz spare"})
insight = call("/api/settings/insights", admin["token"], {"name": "fuzz", "prompt": "What are the top deals in our pipeline?"})
print(admin["token"], key["key"], key["id"], spare["id"], insight["id"])
PY
)
export FUZZ_ADMIN_TOKEN FUZZ_API_KEY FUZZ_API_KEY_ID FUZZ_SPARE_KEY_ID FUZZ_INSIGHT_ID

# fuzz NAME FILTER...: one schemathesis run over the operations the filter selects. One worker:
# with more, hypothesis calls ast.parse from several threads at once, which fails now and then
# on Python 3.11 ("AST constructor recursion depth mismatch", CPython gh-106905). The
# whole run takes under a minute anyway.
fuzz() {
  local name=$1
  shift
  echo "fuzz: --- $name operations ---"
  .tools/venv/bin/schemathesis --config-file tests/fuzz/schemathesis.toml run openapi.json \
    --url "$BASE" "$@" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "${FUZZ_EXAMPLES:-30}" --seed 20261128 --generation-database none \
    --workers 1 --request-timeout 30 --no-color --output-sanitize true \
    --report har --report-har-path "$REPORTS/$name.har"
}

failed=0
fuzz customer --exclude-tag Operator || failed=1
fuzz operator --include-tag Operator || failed=1
python3 tests/fuzz/coverage.py openapi.json "$REPORTS"/*.har || failed=1
echo "fuzz: finished in ${SECONDS}s"
exit "$failed"
