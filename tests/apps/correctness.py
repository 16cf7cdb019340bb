"""A small ASGI app for tests/test_correctness.py: it counts how often each path ran, so a test can tell whether
a request was served once, twice or never."""

import asyncio
import collections
import json
import time

CALLS: collections.Counter = collections.Counter()


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


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    CALLS[path] += 1
    if path == "/calls":
        body = json.dumps(dict(CALLS)).encode()
    elif path == "/block":
        time.sleep(float(dict(p.split("=") for p in scope["query_string"].decode().split("&"))["t"]))
        body = b"blocked"
    elif path == "/spin":  # CPU-bound: holds its thread (and the GIL, in turns) computing, never sleeping
        end = time.monotonic() + float(scope["query_string"].decode().partition("=")[2] or 0.5)
        n = 0
        while time.monotonic() < end:
            n += 1
        body = b"spun"
    elif path == "/await":  # waits on the loop without blocking it
        await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2] or 0.5))
        body = b"awaited"
    elif path == "/await-then-block":  # blocks its loop after its first await (a sync driver after an async one)
        await asyncio.sleep(0.01)
        time.sleep(float(scope["query_string"].decode().partition("=")[2] or 0.3))
        if "text/event-stream" in dict(scope["headers"]).get(b"accept", b"").decode():
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await send({"type": "http.response.body", "body": b"data: blocked\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b"blocked after await"
    elif path == "/ticks":  # an SSE stream: an event every 50 ms, 20 in all
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(20):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
        return
    elif path == "/error-after-complete":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"complete body"})
        raise RuntimeError("raised after the complete response (intentional)")
    else:
        data = await _body(receive)
        body = b"%s %s body=%d:%s" % (scope["method"].encode(), path.encode(), len(data), data)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
