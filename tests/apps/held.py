"""Responses held to the end of a batch (tests/test_held_responses.py).

- ``/fast``: a short answer.
- ``/sleep?s=S``: blocks its thread for S seconds (``time.sleep``), then answers.
- ``/blob?n=N``: N bytes whose 16-byte records name their own offsets (tests/apps/slowread.py's ``blob``).
- ``/then-sleep?s=S``: answers, then blocks its thread for S seconds in the same step.
- ``/go``: sets this loop's "go" event, then answers like ``/fast``.
- ``/later/...``: any of these after ``await asyncio.sleep(0)``: its response completes in a step the loop
  resumed, not in the set owner's batch (tests/test_held_loop.py); ``/park/...``: after this loop's "go" event.
"""

import asyncio
import time

from tests.apps.slowread import blob


async def _answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_GO: dict = {}


def _go() -> asyncio.Event:
    """This loop's "go" event (an asyncio.Event belongs to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _GO:
        _GO[loop] = asyncio.Event()
    return _GO[loop]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    path = scope["path"]
    while True:  # (the rest runs in a step the loop resumes)
        if path.startswith("/later/"):
            await asyncio.sleep(0)
            path = path[len("/later"):]
        elif path.startswith("/park/"):
            await _go().wait()
            path = path[len("/park"):]
        else:
            break
    if path == "/sleep":
        time.sleep(float(query["s"]))
        await _answer(send, b"slept")
    elif path == "/blob":
        await _answer(send, blob(int(query["n"])))
    elif path == "/go":
        _go().set()
        await _answer(send, b"fast")
    elif path == "/then-sleep":
        await _answer(send, b"fast")
        time.sleep(float(query["s"]))
    else:
        await _answer(send, b"fast")
