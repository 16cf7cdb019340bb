"""A raw ASGI app for tests/test_async_pool.py: streaming endpoints that record, per request, which thread ran
them and what they saw, so a test can read back through ``GET /state`` (on any connection) whether a request ran
in a worker thread ("hybrid-worker-N") or in the async pool ("hybrid-async-pool"), how often it ran, and how far
a stream got.

Endpoints (query parameters in brackets):
- ``/state``: JSON of everything recorded (never recorded itself); ``/reset`` clears it.
- ``/sleep`` [t]: ``time.sleep(t)`` in the handler, then a plain answer.
- ``/sse`` [interval, count (0: endless), pad]: ``text/event-stream``, one event per ``interval`` seconds.
- ``/post-stream`` (POST): counts itself, reads the body, streams ``PARTS`` chunks naming its length and digest.
- ``/items/{id}/stream``: a small streamed response (``ITEM_CHUNKS`` chunks), no Accept header needed.
- ``/big`` [total]: ``BIG_CHUNK``-byte chunks as fast as ``send`` returns, each counted once sent; how it ended
  (the exception ``send`` raised, if any) is recorded.
- ``/tail`` [size, sndbuf]: a streamed response whose last chunk is ``size`` bytes; with ``sndbuf``, the kernel
  send buffer of its socket is made that small first, so that a client not reading yet leaves the tail buffered.
- ``/probe`` [read_first]: streams until ``send`` fails, then records the exception and what ``receive`` says.
- ``/wait-disconnect``: sends one chunk, then waits in ``receive`` and records what it returns.
- anything else: a plain response naming the thread that ran it.
"""

import asyncio
import hashlib
import json
import os
import socket
import threading
import time
from urllib.parse import parse_qsl

from tests.apps import plain_lifespan, server_socket_fd

PARTS = 8
ITEM_CHUNKS = 4
BIG_CHUNK = 64 * 1024

_lock = threading.Lock()
STATE: dict = {}


def _reset() -> None:
    with _lock:
        STATE.clear()
        STATE.update(runs=[], post_calls=0, big_chunks=0, big_runs=0, big_ends=[], probe=[], waits=[])


_reset()


def _record(key: str, value) -> None:
    with _lock:
        STATE[key].append(value)


def _add(key: str, n: int = 1) -> None:
    with _lock:
        STATE[key] += n


def _snapshot() -> bytes:
    with _lock:
        return json.dumps(STATE).encode()


def _shrink_send_buffer(scope, size: int) -> bool:
    """Set SO_SNDBUF of this request's server-side socket (found by its addresses among this process's fds), so
    that the kernel takes only a little of a response and the server's own stream buffers the rest. Linux would
    otherwise grow the buffer to megabytes on loopback, which makes what a test wants to see a matter of timing."""
    fd = server_socket_fd(scope)
    if fd < 0:
        return False
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    finally:
        sock.close()
    return True


def post_part(i: int, data: bytes) -> bytes:
    """Chunk ``i`` of /post-stream's response: the body's length and digest (the test computes the same)."""
    return b"part %d:%d:%s;" % (i, len(data), hashlib.sha256(data).hexdigest().encode())


async def _body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _plain(send, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def _start_stream(send, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type), (b"cache-control", b"no-cache")]})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = dict(parse_qsl(scope["query_string"].decode()))
    thread = threading.current_thread().name
    if path == "/state":
        await _plain(send, _snapshot(), b"application/json")
        return
    if path == "/reset":
        _reset()
        await _plain(send, b"reset")
        return
    _record("runs", [scope["method"], path, thread])

    if path == "/sleep":
        time.sleep(float(query.get("t", "2")))
        await _plain(send, f"slept in {thread}".encode())

    elif path == "/sse":
        interval = float(query.get("interval", "0.05"))
        count = int(query.get("count", "0"))
        pad = b"x" * int(query.get("pad", "0"))
        await _start_stream(send, b"text/event-stream")
        n = 0
        while True:
            more = not count or n + 1 < count
            event = b"id: %d\ndata: %s %.6f%s\n\n" % (n, thread.encode(), time.time(), pad)
            await send({"type": "http.response.body", "body": event, "more_body": more})
            n += 1
            if not more:
                return
            await asyncio.sleep(interval)

    elif path == "/post-stream":
        _add("post_calls")
        data = await _body(receive)
        await _start_stream(send)
        for i in range(PARTS):
            await send({"type": "http.response.body", "body": post_part(i, data), "more_body": i + 1 < PARTS})
            await asyncio.sleep(0)

    elif path.startswith("/items/") and path.endswith("/stream"):
        await _start_stream(send)
        for i in range(ITEM_CHUNKS):
            await send({"type": "http.response.body", "body": b"%s chunk %d\n" % (path.encode(), i),
                        "more_body": i + 1 < ITEM_CHUNKS})

    elif path == "/big":
        total = int(query.get("total", str(200 << 20)))
        _add("big_runs")
        chunk = b"b" * BIG_CHUNK
        await _start_stream(send, b"application/octet-stream")
        sent = 0
        try:
            while sent < total:
                sent += BIG_CHUNK
                await send({"type": "http.response.body", "body": chunk, "more_body": sent < total})
                _add("big_chunks")
        except BaseException as exc:
            _record("big_ends", [thread, type(exc).__name__, isinstance(exc, OSError)])
            raise
        _record("big_ends", [thread, None, False])

    elif path == "/tail":
        size = int(query.get("size", "40000"))
        if "sndbuf" in query:
            assert _shrink_send_buffer(scope, int(query["sndbuf"]))
        await _start_stream(send)
        await send({"type": "http.response.body", "body": b"head\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"t" * size})

    elif path == "/probe":
        if query.get("read_first") == "1":
            first = await receive()
            assert first["type"] == "http.request", first
        await _start_stream(send)
        seen: dict = {"thread": thread, "sent": 0}
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await send({"type": "http.response.body", "body": b"tick %d\n" % seen["sent"], "more_body": True})
                seen["sent"] += 1
                await asyncio.sleep(0.02)
            seen["error"] = None
        except BaseException as exc:  # noqa: BLE001 - recorded, whatever it is
            seen["error"] = type(exc).__name__
            seen["is_oserror"] = isinstance(exc, OSError)
            if not isinstance(exc, Exception):
                _record("probe", seen)
                raise
        messages = []
        try:
            for _ in range(3):
                message = await asyncio.wait_for(receive(), 3)
                messages.append(message["type"])
                if message["type"] == "http.disconnect":
                    break
        except TimeoutError:
            messages.append("timeout")
        seen["received"] = messages
        _record("probe", seen)

    elif path == "/wait-disconnect":
        await receive()  # the (empty) request body
        await _start_stream(send)
        await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
        try:
            message = await asyncio.wait_for(receive(), 10)
            _record("waits", [thread, message["type"]])
        except TimeoutError:
            _record("waits", [thread, "timeout"])

    else:
        await _plain(send, f"{scope['method']} {path} in {thread}".encode())
