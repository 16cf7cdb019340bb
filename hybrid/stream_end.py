"""The end of an HTTP stream at shutdown: when the bound for streams passes (``--timeout-graceful-shutdown``, or
STREAMS_DEFAULT without it), a stream whose app is still sending gets its last chunk before the app is cancelled,
so the client sees a complete response (an SSE client reconnects elsewhere), not one cut in the middle. WebSockets
get close 1001 at the start of the shutdown instead (hybrid/asgi/websocket.py)."""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger("hybrid.error")

LAST_CHUNK_WAIT = 0.5  # (a client that reads nothing does not hold the shutdown: the socket just closes)


async def end_stream(cycle) -> None:
    """On the loop serving ``cycle``: complete its response (an empty last body message), then cancel its app."""
    task = cycle.task
    if cycle.response_started and not cycle.response_complete:
        try:
            async with asyncio.timeout(LAST_CHUNK_WAIT):
                await cycle.send({"type": "http.response.body", "body": b"", "more_body": False})
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the client went away: it just closes
            pass
    if task is not None and not task.done():
        task.cancel()


def end_worker_streams(connections) -> int:
    """From the main thread: end every stream served by a worker loop (a response that went on streaming there:
    ``stream_known``). Returns how many were asked to end."""
    ended = 0
    for conn in list(connections):
        cycle = getattr(conn, "cycle", None)
        loop = getattr(conn, "loop", None)
        if getattr(conn, "in_pool", False) or cycle is None or loop is None or not cycle.stream_known:
            continue
        try:
            loop.call_soon_threadsafe(lambda cycle=cycle, loop=loop: loop.create_task(end_stream(cycle)))
            ended += 1
        except RuntimeError:  # its loop is closed
            pass
    return ended


def worker_streams(connections) -> int:
    return sum(1 for conn in list(connections) if not getattr(conn, "in_pool", False)
               and getattr(conn, "cycle", None) is not None and conn.cycle.stream_known)
