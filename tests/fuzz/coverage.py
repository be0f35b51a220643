#!/usr/bin/env python3
"""Per-operation response counts of a fuzz run, from schemathesis' HAR reports.

Schemathesis passes when nothing fails, even if an operation never got past authentication or
validation: such a run proves nothing about the operation. So this counts the responses of
every documented operation by status class, prints them, and fails when an operation was never
called or never answered 2xx (every documented operation can succeed with valid input), or
when POST /api/chat, the product, never answered 200.

Usage: coverage.py OPENAPI_JSON HAR [HAR ...]
"""
import json
import re
import sys
from urllib.parse import urlsplit

CLASSES = ("2xx", "3xx", "4xx", "5xx")


def operations(schema):
    """(method, template, regex) of every documented operation, in document order."""
    ops = []
    for template, item in schema["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        for method in item:
            # The Worker ignores one trailing slash, and schemathesis sometimes sends one.
            ops.append((method.upper(), template, re.compile(f"^{pattern}/?$")))
    return ops


def main(schema_path, har_paths):
    with open(schema_path, encoding="utf-8") as f:
        ops = operations(json.load(f))
    counts = {(m, t): dict.fromkeys(CLASSES, 0) for m, t, _ in ops}
    chat_200 = 0
    undocumented = 0  # methods a path does not have, sent on purpose by the coverage phase
    for har_path in har_paths:
        with open(har_path, encoding="utf-8") as f:
            entries = json.load(f)["log"]["entries"]
        for entry in entries:
            status = entry["response"]["status"]
            if not status:
                continue  # no response at all: schemathesis reports that itself as an error
            method, path = entry["request"]["method"].upper(), urlsplit(entry["request"]["url"]).path
            op = next(((m, t) for m, t, rx in ops if m == method and rx.match(path)), None)
            if op is None:
                undocumented += 1
                continue
            status_class = f"{status // 100}xx"
            if status_class in counts[op]:
                counts[op][status_class] += 1
            chat_200 += op == ("POST", "/api/chat") and status == 200

    problems = []
    width = max(len(f"{m} {t}") for m, t in counts)
    print(f"fuzz: {'operation':<{width}}  total  " + "  ".join(f"{c:>5}" for c in CLASSES))
    for (method, template), by_class in counts.items():
        name = f"{method} {template}"
        total = sum(by_class.values())
        print(f"fuzz: {name:<{width}}  {total:>5}  " + "  ".join(f"{by_class[c]:>5}" for c in CLASSES))
        if total == 0:
            problems.append(f"{name} was never called")
        elif by_class["2xx"] == 0:
            problems.append(f"{name} never succeeded (no 2xx)")
    print(f"fuzz: requests with a method the path does not have (expected 405): {undocumented}")
    print(f"fuzz: POST /api/chat 2xx={counts[('POST', '/api/chat')]['2xx']} (200={chat_200})")
    if chat_200 == 0:
        problems.append("POST /api/chat never answered 200")
    for problem in problems:
        print(f"fuzz: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
