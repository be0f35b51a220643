#!/usr/bin/env python3
"""First start of `make dev`: a demo workspace, its admin and an API key, created through the
operator and settings routes like an operator would. Later starts only print them again."""
import json
import os
import sys
import urllib.error
import urllib.request


RECORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_records.json")


def call(base, method, path, token, body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


def main():
    base, admin_token, state_file = sys.argv[1:4]
    demo = None
    if os.path.exists(state_file):
        with open(state_file) as f:
            demo = json.load(f)
        known = call(base, "GET", "/api/admin/workspaces", admin_token)["workspaces"]
        if not any(w["id"] == demo["workspaceId"] for w in known):
            demo = None  # the local state was reset: bootstrap again
    if demo is None:
        ws = call(base, "POST", "/api/admin/workspaces", admin_token, {"name": "Demo workspace"})
        admin = call(base, "POST", f"/api/admin/workspaces/{ws['id']}/admins", admin_token,
                     {"name": "Demo Admin", "email": "admin@example.com"})
        key = call(base, "POST", "/api/settings/api-keys", admin["token"], {"name": "Demo key"})
        demo = {"workspaceId": ws["id"], "adminToken": admin["token"], "apiKey": key["key"]}
        fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(demo, f)
        print("Created the demo workspace, its admin and an API key.")
    # The sample GTM records, once: a workspace that already holds records is left alone.
    stats = call(base, "GET", "/api/settings/knowledge/stats", demo["adminToken"])
    if stats["total"] == 0:
        with open(RECORDS, encoding="utf-8") as f:
            records = json.load(f)
        try:
            result = call(base, "PUT", "/api/settings/knowledge/records", demo["adminToken"], records)
            print(f"Seeded the demo workspace with {len(result['results'])} sample records (deals, accounts, feedback).")
        except urllib.error.HTTPError as err:
            # E.g. a KNOWLEDGE_MAX_RECORDS below the sample's size: the service runs without it.
            print(f"Did not seed the sample records: {json.load(err).get('error', err.code)}")
    print(f"""
Attive API Connection is running at {base}

  Operator token (ADMIN_TOKEN):   {admin_token}
  Demo workspace:                 {demo['workspaceId']}
  Workspace admin token:          {demo['adminToken']}
  Demo API key:                   {demo['apiKey']}

Try it:

  curl -X POST {base}/api/chat \\
    -H "Authorization: Bearer {demo['apiKey']}" \\
    -H "Content-Type: application/json" \\
    -d '{{"message": "What are the top deals in our pipeline?"}}'

  curl {base}/api/settings/api-keys -H "Authorization: Bearer {demo['adminToken']}"

Settings page (sign in with the workspace admin token): {base}/settings
API reference (OpenAPI):                               {base}/api/openapi.json
""")


if __name__ == "__main__":
    main()
