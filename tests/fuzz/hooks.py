"""Schemathesis hooks of the fuzz run (tests/fuzz/run.sh, loaded through schemathesis.toml).

The fuzzer learns every key id of its workspace (from the key list and from what create and
roll answer) and feeds them to the routes that take a key id. The key it authenticates with
must survive all of them: deleted, it turns every chat call after it into a 401; edited, it may
get a limit of 1 a minute, an expiry or a list of agents (then every chat without one of them
is a 403); rolled with a grace period of 0, it stops working at once. Either way the chat routes
would go untested. So:

- DELETE aimed at it goes to an id that exists nowhere (a 404, also a documented answer);
- PATCH and roll aimed at it go to a spare key of the fuzz workspace instead (run.sh makes it),
  so these calls still succeed. When the spare is rolled, its successor becomes the spare, so
  the next call aimed at the fuzzer's key can roll again rather than meet a 409. The spare
  itself is never deleted, for the same reason.

The same goes for the insight run.sh makes: it is there so that the insight reads (with the key,
and the admin's) have one from the start, so DELETE aimed at it goes to an id that exists
nowhere too. Edits and refreshes of it are harmless: it stays readable whatever they change.
"""

import os

import schemathesis

OWN_KEY_ID = os.environ.get("FUZZ_API_KEY_ID")
NO_SUCH_KEY = "key_" + "0" * 22
KEY_ITEM = "/api/settings/api-keys/{keyId}"
KEY_ROLL = "/api/settings/api-keys/{keyId}/roll"
OWN_INSIGHT_ID = os.environ.get("FUZZ_INSIGHT_ID")
NO_SUCH_INSIGHT = "ins_" + "0" * 22
INSIGHT_ITEM = "/api/settings/insights/{insightId}"

spare = {"id": os.environ.get("FUZZ_SPARE_KEY_ID")}


def _target(case):
    return case.operation.method.upper(), case.operation.path


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    target = _target(case)
    if target == ("DELETE", INSIGHT_ITEM):
        if OWN_INSIGHT_ID and (case.path_parameters or {}).get("insightId") == OWN_INSIGHT_ID:
            case.path_parameters["insightId"] = NO_SUCH_INSIGHT
        return
    if target not in {("DELETE", KEY_ITEM), ("PATCH", KEY_ITEM), ("POST", KEY_ROLL)}:
        return
    key_id = (case.path_parameters or {}).get("keyId")
    if target == ("DELETE", KEY_ITEM):
        if key_id in {OWN_KEY_ID, spare["id"]}:
            case.path_parameters["keyId"] = NO_SUCH_KEY
    elif key_id == OWN_KEY_ID:
        case.path_parameters["keyId"] = spare["id"] or NO_SUCH_KEY


@schemathesis.hook
def after_call(ctx, case, response):
    if _target(case) != ("POST", KEY_ROLL) or response.status_code != 201:
        return
    try:
        body = response.json()
    except ValueError:
        return  # not JSON: the content-type and schema checks report it
    if isinstance(body, dict) and body.get("rolledFrom") == spare["id"] and isinstance(body.get("id"), str):
        spare["id"] = body["id"]
