"""A lifespan that never finishes, for tests/test_lifespan_bounds.py and tests/test_supervisor_lifecycle.py.

STUCK=startup: lifespan startup awaits forever. STUCK=shutdown: lifespan shutdown awaits forever.
FAIL_IF=PATH: while that file exists, lifespan startup fails (lifespan.startup.failed), naming the file.
MARKERS=DIR: one line per event appended to DIR/events.log (``startup <pid>``, ``shutdown <pid>``).
HTTP: every request gets 200 ``ok <pid>``; ``/sse`` is an endless event stream (an event every 0.2 s).
"""

import asyncio
import os

STUCK = os.environ.get("STUCK", "")
FAIL_IF = os.environ.get("FAIL_IF")
MARKERS = os.environ.get("MARKERS")


def mark(event: str) -> None:
    if MARKERS:
        with open(os.path.join(MARKERS, "events.log"), "a") as f:
            f.write(f"{event} {os.getpid()}\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                mark("startup")
                if FAIL_IF and os.path.exists(FAIL_IF):
                    await send({"type": "lifespan.startup.failed", "message": f"{FAIL_IF} exists"})
                    return
                if STUCK == "startup":
                    await asyncio.Event().wait()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                mark("shutdown")
                if STUCK == "shutdown":
                    await asyncio.Event().wait()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/sse":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        while True:
            await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
            await asyncio.sleep(0.2)
    body = f"ok {os.getpid()}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
