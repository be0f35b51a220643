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

Exports are application/x-ndjson, one JSON object a line, which schemathesis can neither read
nor write: it would warn that it cannot check the export routes' answers (and a warning fails
the run), and it could not send a body to the import route at all. So an export is read here
line by line, each line checked against the document's schema of its place (ExportHeader,
ExportLine, ExportEnd), in order, with the end line's counts; and the import is sent exports
made here: well-formed ones only (no row at all, or rows of every type), so that every refusal
the run sees is one of the workspace (404, 409), never of the body. A body refused as invalid would
be a 400 to valid input, which schemathesis reports as a warning; malformed and truncated
imports are tested end to end (tests/e2e/lifecycle.rs).
"""

import hashlib
import json
import os

import jsonschema_rs
import schemathesis
from hypothesis import strategies as st

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


# ---------------------------------------------------------------------------------------------
# Exports (application/x-ndjson)
# ---------------------------------------------------------------------------------------------

EXPORT_TYPES = ("agent", "apiKey", "record", "chat", "message", "insight", "usageDay", "auditEntry")
_validators = {}


def _validator(components, name):
    if name not in _validators:
        root = {"$ref": f"#/components/schemas/{name}", "components": components}
        _validators[name] = jsonschema_rs.Draft202012Validator(root, validate_formats=True)
    return _validators[name]


@schemathesis.deserializer("application/x-ndjson")
def export_lines(ctx, response):
    """Checks every line of an export; hands schemathesis the end line, to check once more."""
    components = ctx.operation.schema.raw_schema["components"]
    with_hashes = ctx.operation.path.startswith("/api/admin/")
    text = response.content.decode("utf-8")
    if not text.endswith("\n"):
        raise ValueError("the export does not end with a newline (was it cut off?)")
    lines = [json.loads(raw) for raw in text[:-1].split("\n")]
    if len(lines) < 2:
        raise ValueError("an export has a header and an end line at least")
    counts = dict.fromkeys(EXPORT_TYPES, 0)
    chats = set()
    last = 0
    for number, line in enumerate(lines, 1):
        name = "ExportHeader" if number == 1 else "ExportEnd" if number == len(lines) else "ExportLine"
        for error in _validator(components, name).iter_errors(line):
            where = list(error.instance_path)
            raise ValueError(f"line {number} is not an {name}: {error.message} at {where}: {line}")
        if name != "ExportLine":
            continue
        kind = line["type"]
        if EXPORT_TYPES.index(kind) < last:
            raise ValueError(f"line {number}: {kind} after {EXPORT_TYPES[last]}")
        last = EXPORT_TYPES.index(kind)
        counts[kind] += 1
        if kind == "chat":
            chats.add(line["id"])
        if kind == "message" and line["chatId"] not in chats:
            raise ValueError(f"line {number}: a message before its chat: {line}")
        if kind == "apiKey" and ("keyHash" in line) != with_hashes:
            raise ValueError(f"line {number}: keyHash is on every key of the operator's backup, and nowhere else")
    if lines[-1]["counts"] != counts:
        raise ValueError(f"the end line counts {lines[-1]['counts']}, the lines are {counts}")
    return lines[-1]


EXPORTED_AT = "2026-01-05T09:30:00.000Z"
TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)


def _id(prefix):
    return f"{prefix}_fuzzRestored0000000000"


@st.composite
def _exports(draw):
    """An export as the export routes write one; the simplest one has no row at all."""
    agent, key, chat = _id("agent"), _id("key"), _id("chat")
    at = {"createdAt": EXPORTED_AT, "updatedAt": EXPORTED_AT}
    rows = []
    if draw(st.booleans()):
        rows += [
            {"type": "agent", "id": agent, "name": draw(TEXT), "instructions": draw(TEXT), **at},
            {"type": "apiKey", "id": key, "name": draw(TEXT), "prefix": "atv2_fuzzRes", "createdByName": "Fuzz",
             "createdAt": EXPORTED_AT, "allowedAgentIds": [agent],
             "keyHash": hashlib.sha256(b"fuzz: a restored key").hexdigest()},
            {"type": "record", "id": _id("rec"), "kind": "deal", "externalId": "fuzz-1", "title": "Acme renewal",
             "body": draw(TEXT), "amount": 1200.5, "currency": "USD", "status": "open",
             "closeDate": "2026-06-30", "properties": {"tier": "gold"}, **at},
            {"type": "chat", "id": chat, "agentId": agent, "title": draw(TEXT), **at},
        ]
        for seq, role in enumerate(["user", "assistant"][: draw(st.integers(0, 2))], 1):
            rows.append({"type": "message", "id": _id(f"msg{seq}"), "chatId": chat, "seq": seq, "role": role,
                         "content": draw(TEXT), "createdAt": EXPORTED_AT, "status": "complete",
                         "usageEstimated": False, "sources": [], "toolCalls": []})
        rows += [
            {"type": "insight", "id": _id("ins"), "name": draw(TEXT), "prompt": draw(TEXT), "agentId": agent,
             "refreshSeconds": 86400, "nextRefreshAt": EXPORTED_AT, "failures": 0, "outdated": False, **at},
            {"type": "usageDay", "keyId": key, "day": EXPORTED_AT[:10], "keyName": "fuzz",
             "keyPrefix": "atv2_fuzzRes", "requests": 3, "errors": 1, "rateLimited": 0, "promptTokens": 10,
             "completionTokens": 20, "llmMs": 300},
            {"type": "auditEntry", "id": _id("aud"), "actor": "Fuzz", "action": "agent.created", "target": agent,
             "targetName": "fuzz", "createdAt": EXPORTED_AT, "details": None},
        ]
    counts = dict.fromkeys(EXPORT_TYPES, 0)
    for row in rows:
        counts[row["type"]] += 1
    header = {"type": "export", "version": 1, "workspaceId": _id("ws"), "exportedAt": EXPORTED_AT}
    lines = [header, *rows, {"type": "end", "counts": counts}]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


schemathesis.openapi.media_type("application/x-ndjson", _exports())
