"""A raw ASGI app for tests/test_runs_once.py (issue 20: the app runs exactly once per request): streamed GETs with
side effects, each recording what it saw, read back through ``GET /state`` (never recorded itself).

Endpoints (query parameters in brackets):
- ``/export/{slug}.csv`` [chunks, interval, block]: counts its runs per path, appends a header to the scope's
  header list as a middleware would (and records how many such headers it found first), then streams ``chunks``
  chunks, ``interval`` seconds apart (``asyncio.sleep``; with ``block=1``, ``time.sleep``: a blocking step).
- ``/download/{token}``: a one-time token: the first run spends it and streams the file; any later run gets 410.
- ``/helper/{slug}`` [chunks, interval]: streams from a helper task (``create_task(producer())``) while the
  handler awaits a queue the helper fills, then the helper's end.
- ``/state``: JSON of what was recorded; anything else: a plain ``ok``.
"""

import asyncio
import json
import threading
import time
from urllib.parse import parse_qsl

from tests.apps import plain_lifespan

_lock = threading.Lock()
RUNS: dict = {}  # path -> runs
ADDED_SEEN: list = []  # per run of /export: x-added headers already in the scope's header list
SPENT: set = set()  # one-time tokens used
STATUSES: list = []  # [path, status] per run of /download


def _count(path: str) -> None:
    with _lock:
        RUNS[path] = RUNS.get(path, 0) + 1


async def _start(send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/csv")]})


async def _stream(send, path: str, chunks: int, interval: float, block: bool) -> None:
    await _start(send)
    for i in range(chunks):
        await send({"type": "http.response.body", "body": b"%s,%d\n" % (path.encode(), i), "more_body": True})
        if interval:
            time.sleep(interval) if block else await asyncio.sleep(interval)
    await send({"type": "http.response.body", "body": b"end\n"})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
        return
    path = scope["path"]
    query = dict(parse_qsl(scope["query_string"].decode()))
    chunks = int(query.get("chunks", "3"))
    interval = float(query.get("interval", "0"))
    if path == "/state":
        with _lock:
            body = json.dumps({"runs": RUNS, "added_seen": ADDED_SEEN, "statuses": STATUSES}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    _count(path)
    if path.startswith("/export/"):
        headers = scope["headers"]
        with _lock:
            ADDED_SEEN.append(sum(1 for name, _ in headers if name == b"x-added"))
        headers.append((b"x-added", b"1"))  # what a middleware may do to the scope it was given
        await _stream(send, path, chunks, interval, query.get("block") == "1")
    elif path.startswith("/download/"):
        token = path.rsplit("/", 1)[1]
        with _lock:
            fresh = token not in SPENT
            SPENT.add(token)
            STATUSES.append([path, 200 if fresh else 410])
        if not fresh:
            await _start(send, 410)
            await send({"type": "http.response.body", "body": b"token already used\n"})
            return
        await _stream(send, path, chunks, interval, False)
    elif path.startswith("/helper/"):
        queue: asyncio.Queue = asyncio.Queue()

        async def producer():
            await _stream(send, path, chunks, interval, False)
            await queue.put("done")

        helper = asyncio.create_task(producer())
        assert await queue.get() == "done"
        await helper
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
