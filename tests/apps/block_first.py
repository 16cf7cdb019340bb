"""The first request blocks its thread for BLOCK_FIRST seconds (default 3) with time.sleep; every other request
answers "ok" at once."""

import os
import time

_first = [True]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if _first[0]:
        _first[0] = False
        time.sleep(float(os.environ.get("BLOCK_FIRST", "3")))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
