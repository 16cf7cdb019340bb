"""A plain ASGI app that keeps running after its response is complete (what BackgroundTasks do): ``/inline``
answers within its first step, ``/later`` after an await; both then sleep ``t`` seconds and count."""

import asyncio

DONE: list[str] = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    t = float(scope["query_string"].decode().partition("t=")[2] or 0)
    if path == "/done":
        body = str(len(DONE)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    if path.startswith("/later"):
        await asyncio.sleep(0.01)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"answered"})
    await asyncio.sleep(t)  # still running, response complete
    DONE.append(path)
    if path == "/later-fail":
        raise RuntimeError("failed after the response (intentional)")
