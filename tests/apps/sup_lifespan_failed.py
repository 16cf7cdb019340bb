"""Lifespan startup fails with a message (supervisor tests: workers that fail at start)."""

MESSAGE = "sup-startup-failed-marker-c41d: cache unreachable"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        msg = await receive()
        assert msg["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": MESSAGE})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
