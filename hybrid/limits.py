"""Load limits of one process: --limit-concurrency (503 past it) and --limit-connections (stop accepting).

Both are off by default and then cost nothing: the server holds None and the hot path tests for that once.

``--limit-concurrency N``: at most N app calls run at once (HTTP requests in the worker threads and the pool,
WebSocket sessions). One more is not queued, it is answered at once by a small built-in app: 503 with
``Retry-After``, or for a WebSocket the same 503 as a denial response. Shedding early keeps the latency of the
admitted requests; a queue would only make everyone late.

``--limit-connections N``: at most N open connections. At the limit the listeners leave every epoll set, so
further connections wait in the kernel's backlog (their clients see a slow connect, not an error), and come
back as soon as a connection closes.
"""

from __future__ import annotations

import threading

RETRY_AFTER = b"1"
_BUSY_BODY = b"Service Unavailable\n"  # (clients are not told about server flags)
_BUSY_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"retry-after", RETRY_AFTER),
    (b"content-length", str(len(_BUSY_BODY)).encode()),
]


async def busy_app(scope, receive, send) -> None:
    """What a request over --limit-concurrency runs instead of the app."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.http.response.start", "status": 503, "headers": _BUSY_HEADERS})
        await send({"type": "websocket.http.response.body", "body": _BUSY_BODY})
        return
    await send({"type": "http.response.start", "status": 503, "headers": _BUSY_HEADERS})
    await send({"type": "http.response.body", "body": _BUSY_BODY})


class ConcurrencyLimit:
    """Counts app calls in flight across the process's threads (serving threads, spares, the pool)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0
        self._lock = threading.Lock()

    def admit(self, app):
        """``app`` when there is room (the caller must ``release()`` when that call ends), else ``busy_app``."""
        with self._lock:
            if self.in_flight < self.limit:
                self.in_flight += 1
                return app
            self.refused += 1
        return busy_app

    def release(self, _task=None) -> None:
        with self._lock:
            self.in_flight -= 1


class ConnectionLimit:
    """Pauses accepting in every connection set while the process holds ``limit`` open connections."""

    def __init__(self, limit: int, server) -> None:
        self.limit = limit
        self.server = server
        self.paused = False
        self._lock = threading.Lock()

    def full(self) -> bool:
        return len(self.server.connections) >= self.limit

    def pause(self) -> None:
        with self._lock:
            if self.paused or not self.full():
                return
            self.paused = True
            for part in self._accepting():
                part.pause_accepting()

    def closed_one(self) -> None:
        """A connection closed (any thread): accept again once below the limit."""
        if self.paused and not self.full():
            with self._lock:
                if not self.paused or self.full():
                    return
                self.paused = False
                for part in self._accepting():
                    part.resume_accepting()

    def _accepting(self) -> list:
        """Who watches the listeners: every connection set, or in --mode async the pool's acceptor."""
        acceptor = self.server.acceptor
        return [acceptor] if acceptor is not None else list(self.server.sets.values())
