"""tests/apps/ws.py's WebSocket app, counting its runs per path, for tests/test_h2_websocket.py.

HTTP ``GET /stats``: {"runs": {path: WebSocket app runs}, "last": the last echo's disconnect [code, reason]}.
"""

import json
from collections import Counter

from tests.apps import ws

RUNS: Counter = Counter()


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        RUNS[scope["path"]] += 1
    elif scope["type"] == "http" and scope["path"] == "/stats":
        body = json.dumps({"runs": RUNS, "last": ws.LAST["disconnect"]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await ws.app(scope, receive, send)
