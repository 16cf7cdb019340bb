"""/sleep blocks the calling thread for 50 ms (as a blocking database driver does); every other path is fast."""

import time

FAST = b"fast"
SLEPT = b"slept"


def _start(n):
    return {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", str(n).encode())],
    }


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/sleep":
        time.sleep(0.05)
        body = SLEPT
    else:
        body = FAST
    await send(_start(len(body)))
    await send({"type": "http.response.body", "body": body})
