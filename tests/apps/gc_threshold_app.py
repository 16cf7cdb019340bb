"""How the garbage collector runs in the serving process. GET /threshold answers ``gc.get_threshold()[0]``;
GET /young answers how many collections of the youngest generation ran since the last /young; any other path
holds 40 container objects across one await, as a request in flight keeps its scope, frames and task alive.

With GC_APP_THRESHOLD set, the app sets that threshold itself when it is imported."""

import asyncio
import gc
import os

if os.environ.get("GC_APP_THRESHOLD"):
    gc.set_threshold(int(os.environ["GC_APP_THRESHOLD"]), *gc.get_threshold()[1:])

_young = [0]


def _count(phase, info):
    if phase == "start" and info["generation"] == 0:
        _young[0] += 1


gc.callbacks.append(_count)


async def _answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/threshold":
        await _answer(send, str(gc.get_threshold()[0]).encode())
    elif path == "/young":
        count, _young[0] = _young[0], 0
        await _answer(send, str(count).encode())
    else:
        held = [{"i": i} for i in range(40)]
        await asyncio.sleep(0)
        await _answer(send, str(len(held)).encode())
