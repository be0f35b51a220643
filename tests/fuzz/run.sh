#!/usr/bin/env bash
# Schemathesis against the running service: bounded (fixed examples per operation, fixed seed),
# all phases including stateful links (create → use → delete). Checks: no 5xx, responses
# conform to the documented schemas and status codes, JSON content types, and the required
# X-Request-Id header. Usage: tests/fuzz/run.sh BASE_URL OPERATOR_TOKEN
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=$1
export FUZZ_OPERATOR_TOKEN=$2

# A workspace of the fuzzer's own, with an admin and a key that the limiter will not throttle.
read -r FUZZ_ADMIN_TOKEN FUZZ_API_KEY < <(python3 - "$BASE" "$FUZZ_OPERATOR_TOKEN" <<'PY'
import json, sys, urllib.request
base, op = sys.argv[1:3]
def call(path, token, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
ws = call("/api/admin/workspaces", op, {"name": "fuzz"})
admin = call(f"/api/admin/workspaces/{ws['id']}/admins", op, {"name": "Fuzz", "email": "fuzz@example.com"})
key = call("/api/settings/api-keys", admin["token"], {"name": "fuzz", "rateLimitPerMinute": 100000})
print(admin["token"], key["key"])
PY
)
export FUZZ_ADMIN_TOKEN FUZZ_API_KEY

.tools/venv/bin/schemathesis --config-file tests/fuzz/schemathesis.toml run "$BASE/api/openapi.json" \
  --url "$BASE" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${FUZZ_EXAMPLES:-30}" --seed 20261128 --generation-database none \
  --workers 4 --request-timeout 30 --no-color --output-sanitize true
