"""A publish/subscribe app that loses messages, for tests/test_bench_crossloop.py: ``POST /publish/{msg}`` feeds
every ``GET /events`` stream but the first one opened, and each event goes out in two body messages (two chunks),
so the bench's client must join an event split across chunks and count the first stream's messages as lost;
``POST /publish/m1`` is answered 500 and publishes nothing; and every answer to a publish closes its connection
(hypercorn closes one after 1,000 requests): the client reconnects."""

import asyncio

SUBSCRIBERS: list[asyncio.Queue] = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/events":
        q: asyncio.Queue = asyncio.Queue()
        SUBSCRIBERS.append(q)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        message = "ready"
        while True:
            await send({"type": "http.response.body", "body": b"data: ", "more_body": True})
            await send({"type": "http.response.body", "body": f"{message}\n\n".encode(), "more_body": True})
            message = await q.get()
    body, status = b"ok", 200
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    if path == "/publish/m1":  # refused: publishes nothing
        status = 500
    elif path.startswith("/publish/"):
        for q in SUBSCRIBERS[1:]:  # the first subscriber is forgotten
            q.put_nowait(path.removeprefix("/publish/"))
    if path.startswith("/publish/"):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
