"""Schemathesis hooks of the fuzz run (tests/fuzz/run.sh, loaded through schemathesis.toml)."""

import os

import schemathesis

# The fuzzer learns every key id of its workspace (from GET /api/settings/api-keys) and feeds
# them to DELETE /api/settings/api-keys/{keyId}. Deleting the key it authenticates with would
# turn every chat call after it into a 401 and leave the chat routes untested, so that one
# call is aimed at an id that exists nowhere instead (a 404, also a documented answer).
OWN_KEY_ID = os.environ.get("FUZZ_API_KEY_ID")
NO_SUCH_KEY = "key_" + "0" * 22


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if (
        case.operation.method.upper() == "DELETE"
        and case.operation.path == "/api/settings/api-keys/{keyId}"
        and case.path_parameters.get("keyId") == OWN_KEY_ID
    ):
        case.path_parameters["keyId"] = NO_SUCH_KEY
