"""A small ASGI app for the TLS tests (tests/test_tls.py): scope details, echo, large bodies, a stream, a
WebSocket echo."""

import asyncio
import hashlib
import json


async def _body(receive) -> bytes:
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            raise ConnectionError("client disconnected")
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks)


async def _send(send, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({"scheme": scope["scheme"]})})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                await send({"type": "websocket.send", "text": msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": msg["bytes"]})
    path = scope["path"]
    if path == "/scope":
        info = {"scheme": scope["scheme"], "client": scope["client"], "server": scope["server"]}
        await _send(send, json.dumps(info).encode(), b"application/json")
    elif path == "/echo":
        body = await _body(receive)
        info = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        await _send(send, json.dumps(info).encode(), b"application/json")
    elif path == "/big":
        size = int(scope["query_string"].decode().partition("=")[2] or 1 << 20)
        await _send(send, bytes(range(256)) * (size // 256))
    elif path == "/sse":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        # (the scope the async pool built: the stream runs there)
        await send({"type": "http.response.body", "body": b"event: scheme\ndata: %s\n\n" % scope["scheme"].encode(),
                    "more_body": True})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/sleep":
        await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2] or 1))
        await _send(send, b"slept")
    else:
        await _send(send, b"hello")
