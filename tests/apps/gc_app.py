"""Cyclic garbage left per request. Automatic collection is off in this process; GET /collect runs one full
collection and answers how many unreachable objects it found. /await answers after awaiting once (its task
outlives its first step), /inline answers at once."""

import asyncio
import gc

gc.disable()


async def _answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/collect":
        await _answer(send, str(gc.collect()).encode())
    elif path == "/await":
        await asyncio.sleep(0)
        await _answer(send, b"awaited")
    else:
        await _answer(send, b"inline")
