"""The app the HTTP/2 tests drive (tests/test_h2*.py): each route exercises one part of a stream's cycle."""

import asyncio
import json
import time

from tests.apps import plain_lifespan

CALLS = {"count": 0}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await plain_lifespan(receive, send)
    path = scope["path"]
    if path == "/scope":  # what the app sees of the request
        CALLS["count"] += 1
        body = json.dumps({
            "http_version": scope["http_version"], "method": scope["method"], "path": scope["path"],
            "query_string": scope["query_string"].decode(), "scheme": scope["scheme"],
            "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]], "calls": CALLS["count"],
            "client": scope["client"], "request_id": scope["extensions"]["hybrid.request_id"]["id"],
        }).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/scope-body":  # reads the whole body, then answers its size
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})
    elif path == "/echo":  # streams the request body back as it reads it, then its size
        await send({"type": "http.response.start", "status": 200, "headers": []})
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if message.get("body"):
                await send({"type": "http.response.body", "body": message["body"], "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":  # ?n bytes, sent in 64 KiB messages (flow control on the way out)
        n = int(scope["query_string"] or 1 << 20)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(n).encode())]})
        chunk = b"x" * 65536
        while n > 0:
            part = chunk[:n]
            n -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": n > 0})
    elif path == "/sleep":  # ?seconds, awaiting
        if scope["query_string"] == b"1.01":  # (the shutdown test's cue: its request is in the app)
            print("h2 app: sleep 1.01 started", flush=True)
        await asyncio.sleep(float(scope["query_string"] or 1))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slept"})
    elif path == "/block":  # ?seconds, blocking the thread (what HTTP/2 handlers must not do)
        time.sleep(float(scope["query_string"] or 0.5))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"blocked"})
    elif path == "/raise":
        raise RuntimeError("boom")
    elif path == "/raise-late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-sum")],
                    "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"42")]})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello h2"})
