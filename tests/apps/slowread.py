"""Large responses for slow readers (tests/test_slow_readers.py).

- ``/blob?n=N``: one body message of N bytes, Content-Length framed. Every 16-byte record names its own offset,
  so a cut, a shifted copy or another response's bytes inside it show in a comparison (``blob(n)``).
- ``/pool/blob?n=N&chunk=C``: the same bytes streamed in C-byte chunks (chunked framing); the tests route
  ``/pool`` to the async pool with ``--async-path``.
- ``/small``: a short answer (the request pipelined behind a large one).
- ``/upload``: reads the whole body, answers its length; returns without a response on ``http.disconnect``.
- ``/no-response``: reads the whole body, then returns without starting a response (a genuine app bug).
- ``/live``: how many Connection objects this process holds (gc), live ones being served or waiting included.
"""

import functools
import gc


@functools.lru_cache(maxsize=4)
def blob(n: int) -> bytes:
    return b"".join(b"%015d\n" % i for i in range(0, n + 15, 16))[:n]


def _query(scope) -> dict:
    return dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)


async def _answer(send, body: bytes, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> int:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return -1
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            return size


def _live_connections() -> int:
    from hybrid._speedups.connection import Connection

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Connection))


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    q = _query(scope)
    if path == "/blob":
        await _answer(send, blob(int(q["n"])))
    elif path == "/pool/blob":
        data, step = blob(int(q["n"])), int(q.get("chunk", "65536"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for i in range(0, len(data), step):
            await send({"type": "http.response.body", "body": data[i:i + step], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/small":
        await _answer(send, b"small")
    elif path == "/upload":
        size = await _read_body(receive)
        if size >= 0:  # (the client left: nobody to answer, and returning is what apps do)
            await _answer(send, str(size).encode())
    elif path == "/no-response":
        await _read_body(receive)
    elif path == "/live":
        await _answer(send, str(_live_connections()).encode())
    else:
        await _answer(send, b"not found", 404)
