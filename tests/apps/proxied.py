"""What a proxied app sees: the client, scheme and host hybrid reports, over HTTP, SSE and WebSocket.

Routes: ``/scope`` answers JSON {client, scheme, host, server}; ``/sse?n=N&gap=S`` sends N server-sent events
S seconds apart, each carrying the server's clock; WebSocket ``/ws`` sends the same JSON as ``/scope`` first,
then echoes text messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs


def _seen(scope) -> bytes:
    host = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"host"), None)
    client = list(scope["client"]) if scope.get("client") else None
    return json.dumps({"client": client, "scheme": scope["scheme"], "host": host}).encode()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": _seen(scope).decode()})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/sse":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for i in range(int(q.get("n", "3"))):
            if i:
                await asyncio.sleep(float(q.get("gap", "0.3")))
            event = b"id: %d\ndata: %.6f\n\n" % (i, time.time())
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = _seen(scope)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
