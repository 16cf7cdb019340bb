"""WebSocket echo on any path: accept, then send every message back as it came (bytes as bytes, text as text)
until the client leaves. Plain HTTP answers a 13-byte text/plain body (the suite's readiness probe asks for ``/``).
"""

PLAIN_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
PLAIN_BODY = {"type": "http.response.body", "body": b"Hello, world!"}
ACCEPT = {"type": "websocket.accept"}


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "websocket":
        if (await receive())["type"] != "websocket.connect":
            return
        await send(ACCEPT)
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return  # websocket.disconnect
            data = message.get("bytes")
            if data is not None:
                await send({"type": "websocket.send", "bytes": data})
            else:
                await send({"type": "websocket.send", "text": message.get("text") or ""})
    elif kind == "http":
        await send(PLAIN_START)
        await send(PLAIN_BODY)
    # lifespan: nothing to set up
