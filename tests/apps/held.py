"""Responses held to the end of a batch (tests/test_held_responses.py).

- ``/fast``: a short answer.
- ``/sleep?s=S``: blocks its thread for S seconds (``time.sleep``), then answers.
- ``/blob?n=N``: N bytes whose 16-byte records name their own offsets (tests/apps/slowread.py's ``blob``).
"""

import time

from tests.apps.slowread import blob


async def _answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    if scope["path"] == "/sleep":
        time.sleep(float(query["s"]))
        await _answer(send, b"slept")
    elif scope["path"] == "/blob":
        await _answer(send, blob(int(query["n"])))
    else:
        await _answer(send, b"fast")
