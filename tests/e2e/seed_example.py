# The product page's Python example, as written there; only BASE_URL and the key come from the
# environment. Uses urllib when `requests` is not installed, with the same calls.
import json
import os
import urllib.request

API_KEY = os.environ["API_KEY"]
BASE_URL = os.environ["BASE_URL"]

try:
    import requests
except ImportError:  # a minimal stand-in with the two calls the example uses
    class _Resp:
        def __init__(self, status, body):
            self.status_code, self._body = status, body

        def raise_for_status(self):
            if self.status_code >= 400:
                raise RuntimeError(f"HTTP {self.status_code}: {self._body}")

        def json(self):
            return json.loads(self._body)

    class requests:  # noqa: N801
        @staticmethod
        def post(url, headers, json):
            req = urllib.request.Request(url, data=_dumps(json).encode(), headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req) as r:
                    return _Resp(r.status, r.read().decode())
            except urllib.error.HTTPError as e:
                return _Resp(e.code, e.read().decode())

_dumps = json.dumps


def send_message(message, agent_id=None, chat_id=None):
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json"
    }

    payload = {"message": message}
    if agent_id:
        payload["agentId"] = agent_id
    if chat_id:
        payload["chatId"] = chat_id

    response = requests.post(
        f"{BASE_URL}/api/chat",
        headers=headers,
        json=payload
    )

    response.raise_for_status()
    return response.json()

# Start a new conversation
result = send_message("What's our current pipeline value?")
print(f"Response: {result['response']}")

# Continue the conversation
follow_up = send_message(
    "How does that compare to last quarter?",
    chat_id=result['chatId']
)
print(f"Follow-up: {follow_up['response']}")
