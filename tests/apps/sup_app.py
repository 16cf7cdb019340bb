"""Raw ASGI app for the supervisor and signal tests (tests/test_supervisor.py, tests/test_signals.py).

Every response body is ``pid=<worker pid> v=<SUP_VERSION>``, followed by `` id=<id>`` for a request with ``?id=``, so
a client can tell which worker process answered and that the response is the one to its own request.
If the environment variable SUP_MARKERS names a folder, the app appends one line per event to
``SUP_MARKERS/events.log``: ``<event> <pid> <thread ident>``, where event is ``startup`` / ``shutdown`` (lifespan,
once per event loop), ``enter:<id>`` (a request with ``?id=`` reached the app) or ``done:<id>`` (its handler
finished). Lines are short single ``write``s with O_APPEND, so concurrent writers from several processes and threads
do not interleave.

Routes: ``/`` (fast), ``/slow?t=SECONDS`` (awaits asyncio.sleep), ``/hang`` (awaits forever),
``/block?t=SECONDS`` (time.sleep: blocks its thread).

SUP_FAIL_IF=PATH: while that file exists, lifespan startup fails (lifespan.startup.failed, naming the file). If the
file says ``one``, the first process to start after it appeared passes instead (it claims ``PATH.pass``), and the
others fail only after 6 s (so the one that passed is serving by then): a SIGHUP that half fails. If it says
``slow``, startup takes 3 s (in the process's first loop) and succeeds.
"""

import asyncio
import os
import threading
import time
from urllib.parse import parse_qs

MARKERS = os.environ.get("SUP_MARKERS")
VERSION = os.environ.get("SUP_VERSION", "v1")
FAIL_IF = os.environ.get("SUP_FAIL_IF")
_passed = False  # (this process claimed the pass: its every loop starts)
_failing = False


async def _startup_fails() -> str | None:
    global _passed
    if not FAIL_IF or not os.path.exists(FAIL_IF) or _passed:
        return None
    with open(FAIL_IF) as f:
        how = f.read().strip()
    if how == "slow":  # (once per process: its other loops start at once)
        await asyncio.sleep(3)
        _passed = True
        return None
    one = how == "one"
    if one:
        try:
            os.close(os.open(FAIL_IF + ".pass", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            _passed = True
            return None
        except FileExistsError:
            global _failing
            if not _failing:  # (once per process: a startup that runs again in another loop fails at once)
                _failing = True
                await asyncio.sleep(6)
    return f"{FAIL_IF} exists"


def mark(event: str) -> None:
    if not MARKERS:
        return
    line = f"{event} {os.getpid()} {threading.get_ident()}\n".encode()
    fd = os.open(os.path.join(MARKERS, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def _respond(send, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                mark("startup")
                failure = await _startup_fails()
                if failure:
                    await send({"type": "lifespan.startup.failed", "message": failure})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                mark("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    rid = query.get("id")
    if rid is not None:
        mark(f"enter:{rid}")
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(float(query.get("t", "1")))
    elif path == "/hang":
        await asyncio.sleep(3600)
    elif path == "/block":
        time.sleep(float(query.get("t", "1")))  # blocks its thread (and that thread's loop) on purpose
    body = f"pid={os.getpid()} v={VERSION}".encode()
    if rid is not None:
        body += f" id={rid}".encode()
    if path in ("/slow", "/block"):
        body += b" slow-done"
    await _respond(send, body)
    if rid is not None:
        mark(f"done:{rid}")
