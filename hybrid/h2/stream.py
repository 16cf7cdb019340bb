"""One HTTP/2 stream's ASGI cycle: the ``http`` scope, ``receive`` and ``send`` of one request.

The session (session.py) feeds it frames' contents (``on_data``, ``on_end``, ``on_gone``); the app's ``send``
goes back through the session, which owns the ``h2`` connection and the socket. The app runs on a worker
thread's loop (``onworker.py``; on the pool's own loop only under ``--mode async``): then what the session tells
the stream reaches that loop through its Mailbox, and ``send`` posts its messages to the pool's
(``crossing.py``). Its scope is built in C (``hybrid/_speedups/h2scope.pyx``). Request body bytes are
acknowledged (WINDOW_UPDATE) only once the app has received them, so a slow app holds at most one stream window
(64 KiB) of its body in memory.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter

from hybrid._speedups.h2fields import response_fields
from hybrid.asgi.http import ClientDisconnected
from hybrid.h2 import crossing
from hybrid.h2.bound import wait_bounded

NO_BODY_STATUS = (204, 304)
MIN_BODY_RATE = 500  # bytes a second a body must average once it took --timeout-request-body (as HTTP/1.1)


class H2Stream:
    """One request on an HTTP/2 connection; its app runs once, as its own task on a worker's loop (or the
    pool's, --mode async)."""

    is_websocket = False  # (an H2WebSocket is the other kind of stream: hybrid/h2/websocket.py)
    __slots__ = ("session", "id", "scope", "body", "body_bytes", "ended", "delivered_end", "gone", "waiter",
                 "window_waiter", "status", "headers", "trailers", "sent_headers", "complete", "task", "head", "sent",
                 "started", "remote", "inbox", "app_loop", "app_task", "ops", "writer", "chunks", "first_step",
                 "last_body")

    def __init__(self, session, stream_id: int, scope: dict) -> None:
        # (The session makes its streams with h2scope.new_stream, these stores in C: a slot added or changed here
        # must be there too; tests/test_h2scope.py compares the two.)
        self.session = session
        self.id = stream_id
        self.scope = scope  # (also what a blocked-loop warning names: Server.blocked_loop)
        self.head = scope["method"] == "HEAD"
        self.body: deque = deque()  # (data, flow-controlled length) not yet received by the app
        self.body_bytes = 0
        self.ended = False  # the client's END_STREAM arrived
        self.delivered_end = False  # the app received more_body=False
        self.gone = False  # reset (either side) or the connection is lost: the app sees http.disconnect
        self.waiter = None
        self.window_waiter = None
        self.status = None
        self.headers = ()
        self.trailers = False
        self.sent_headers = False
        self.complete = False
        self.task = None  # (the pool's handle: the app's task, or for a remote app a future standing for it)
        self.remote = False  # the app runs on a worker's loop (H2Session._start)
        self.inbox = None  # that worker loop's Mailbox, once it took the stream: the session's news go there
        self.app_loop = session.loop  # the loop the app runs on: receive's waiters live there
        self.app_task = None  # (remote: the app's task, touched on its own loop only)
        self.ops = None  # (remote: the app's sends and its end, in order, on the pool's side; crossing.py)
        self.writer = None  # (remote: the pool task finishing a send that waits for windows)
        self.chunks = 0  # (remote: body messages with more to come; the second makes the route a streaming one)
        self.first_step = False  # (remote: the app's first step runs now, onworker.run_stream)
        self.last_body = None  # (remote: the last body the first step sent, to cross with the app's end)
        self.sent = 0  # body bytes handed to h2 (the access log's bytes)
        self.started = perf_counter()  # (the access log's duration)

    # -- from the session ---------------------------------------------------------------------------------

    def on_data(self, data: bytes, flow: int) -> None:
        self.body.append((data, flow))
        self.body_bytes += len(data)
        self._wake()

    def on_end(self) -> None:
        self.ended = True
        if self.inbox is not None or self.waiter is not None:  # (most requests: neither, ended in their HEADERS)
            self._wake()

    def on_gone(self) -> None:
        self.gone = True
        self._wake()
        self.wake_window()

    def cancel_app(self) -> None:
        """The client reset the stream (or shutdown's bound ran out): the app's task is cancelled, at its next
        await if a step is blocking now. A remote app not yet started never starts (``gone`` is set first)."""
        if self.inbox is not None:
            self.inbox.post(self._cancel_here)
        elif not self.remote and self.task is not None:
            self.task.cancel()

    def _cancel_here(self) -> None:
        task = self.app_task
        if task is not None and not task.done():
            task.cancel()

    def _wake(self) -> None:
        inbox = self.inbox
        if inbox is not None:  # (the app waits on a worker's loop: wake it there)
            inbox.post(self._wake_here)
        else:
            self._wake_here()

    def _wake_here(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake_window(self) -> None:
        waiter = self.window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI ------------------------------------------------------------------------------------------------

    async def receive(self) -> dict:
        while True:
            if self.gone or self.complete:
                return {"type": "http.disconnect"}
            if self.body:
                try:
                    data, flow = self.body.popleft()
                except IndexError:  # (the session released it meanwhile: the stream is gone)
                    continue
                if flow:  # the window opens as the app reads
                    if self.remote:
                        self.session.pool.h2_inbox.post(self.session.consumed, self.id, flow)
                    else:
                        self.session.consumed(self.id, flow)
                more = bool(self.body) or not self.ended
                self.delivered_end = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self.ended and not self.delivered_end:
                self.delivered_end = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self.waiter = self.app_loop.create_future()
            if self.ended:  # (the body is whole: wait for the disconnect, however long)
                try:
                    await self.waiter
                finally:
                    self.waiter = None
                continue
            limit = self.session.body_timeout
            try:
                arrived = await wait_bounded(self.app_loop, self.waiter, limit)
            finally:
                self.waiter = None
            if not arrived:
                self._stalled()  # nothing for --timeout-request-body: 408, the stream reset
                continue
            elapsed = perf_counter() - self.started
            if elapsed >= limit and self.body_bytes < MIN_BODY_RATE * elapsed and not self.ended:
                self._stalled()  # a trickle (slowloris), as over HTTP/1.1

    def _stalled(self) -> None:
        if self.remote:
            self.session.pool.h2_inbox.post(self.session.body_stalled, self)  # (its reset wakes receive)
        else:
            self.session.body_stalled(self)

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("http.response.start sent twice")
            self.status = int(message["status"])
            self.headers = response_fields(message.get("headers", ()))  # (ValueError for what h2 refused)
            self.trailers = bool(message.get("trailers", False))
            return
        if kind == "http.response.body":
            if self.status is None:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.complete and not self.trailers:
                raise RuntimeError("http.response.body sent after the response was complete")
            if self.gone:
                raise ClientDisconnected("The client reset the stream")
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if self.head or self.status in NO_BODY_STATUS:
                body = b""
            end = not more and not self.trailers
            session = self.session
            if not more:
                self.complete = True  # (before any wait: receive() now says disconnect)
            if self.remote:  # the pool's loop writes it; a send with more to come waits for that (backpressure)
                if more:
                    self.chunks += 1
                    if self.chunks == 2:  # a stream, as over HTTP/1.1: the route's next requests run on the pool
                        session.server.router.learn(self.scope["method"], self.scope["path"])
                elif end and self.first_step:  # (crosses after the step, with the app's end if it ended: one post)
                    self.last_body = body
                    return
                await crossing.send_body(self, body, end, more)
                return
            if not self.sent_headers:
                self.sent_headers = True
                if session.send_start(self, body, end):  # (HEADERS and the whole body in one step)
                    if end:
                        session.stream_done(self)
                    return
            if body or end:
                await session.send_data(self, body, end)
            if end:
                session.stream_done(self)
            return
        if kind == "http.response.trailers":
            if not self.trailers or not self.complete:
                raise RuntimeError("http.response.trailers without trailers=True or before the last body")
            if self.gone:
                raise ClientDisconnected("The client reset the stream")
            headers = response_fields(message.get("headers", ()))
            self.trailers = False
            if not message.get("more_trailers", False):
                if self.remote:
                    self.session.pool.h2_inbox.post(crossing.write_trailers, self, headers)
                    return
                self.session.send_trailers(self, headers)
                self.session.stream_done(self)
            return
        raise RuntimeError(f"Unexpected ASGI message {kind!r} on an HTTP request")

    async def wait_window(self, timeout: float) -> None:
        """Until a WINDOW_UPDATE (or a reset) for this stream or the connection; TimeoutError past ``timeout``."""
        loop = self.session.loop
        self.window_waiter = loop.create_future()
        try:
            if not await wait_bounded(loop, self.window_waiter, timeout):
                raise TimeoutError
        finally:
            self.window_waiter = None
