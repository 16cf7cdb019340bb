"""A raw ASGI app for tests/test_fd_reuse.py (issue 20 item 7): a response whose first chunk the server holds, then
flushes in the background for a client that does not read, before the app fails; and a large plain response.
Each records the server-side fd number of its connection (``GET /fds``), so a test can tell it was reused.

Endpoints (query parameters in brackets):
- ``/held-then-fail`` [size]: one ``more_body=True`` chunk of ``size`` bytes, a pause past the server's 10 ms
  hold (the chunk goes out, the rest in the background), then an exception.
- ``/big`` [size]: ``size`` bytes in one message (Content-Length).
- ``/fds``: JSON list of [path, fd] recorded so far.
"""

import asyncio
import json
from urllib.parse import parse_qsl

from tests.apps import plain_lifespan, server_socket_fd

FDS: list = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
        return
    path = scope["path"]
    query = dict(parse_qsl(scope["query_string"].decode()))
    size = int(query.get("size", str(16 << 20)))
    if path == "/fds":
        body = json.dumps(FDS).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    FDS.append([path, server_socket_fd(scope)])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    if path == "/held-then-fail":
        await send({"type": "http.response.body", "body": b"h" * size, "more_body": True})
        await asyncio.sleep(0.1)
        raise RuntimeError("failed after its first chunk (expected by the test)")
    await send({"type": "http.response.body", "body": b"b" * size})
