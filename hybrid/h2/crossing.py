"""An HTTP/2 stream whose app runs on a worker thread's loop, its frames on the pool's: what crosses, and how.

Why (docs/architecture.md, "HTTP/2"): the frames of a connection have one owner, the session on the pool's
loop; an app run there stalls every stream, SSE and WebSocket of the pool while one of its steps blocks. So a
stream's app runs where HTTP/1.1 requests run: ``H2Session._start`` queues the stream in the connection's home
epoll set (``ConnectionSet.wake_h2``, once per loop iteration of the pool: ``wake_soon``), and whichever thread
owns that set runs the app's first step at once, marked for the monitor (``onworker.run_stream``). A handler
that blocks there is taken over like an HTTP/1.1 one: the set, and with it the next streams, goes to a spare
within --blocking-threshold.

Crossing the threads (each side batched per loop iteration by a Mailbox, ``hybrid/mailbox.py``):
- pool -> app loop: a body chunk, the end of the body, a reset, a window, the reply to a send (``H2Stream``'s
  waiters live on the app's loop; ``stream.inbox`` is that loop's Mailbox);
- app loop -> pool: each send (below), a consumed body chunk (WINDOW_UPDATE), the app's end; a response
  completed in the app's first step and that app's end cross together (``finish``: one post, not two).
The sends of one stream and its end are applied in order (``stream.ops``): one posting thread, one deque.

Backpressure: a send with more to come waits until the pool handed it to h2 within the windows and the
session's write bound (HIGH_WATER), as a send on the pool's loop does; the last one does not wait (the app's
response is complete; the pool finishes writing it, the stream stays open until then and its end after it).
"""

from __future__ import annotations

import asyncio
from collections import deque

from h2.errors import ErrorCodes

from hybrid.asgi.http import ClientDisconnected

WRITE, TRAILERS, DONE = 0, 1, 2


# -- on the pool's loop --------------------------------------------------------------------------------------

class _Running:
    """``stream.task`` of a remote app: not None while it runs (stream_done), no task to cancel here."""

    __slots__ = ()


RUNNING = _Running()


def stand_in(pool, stream) -> None:
    """At a graceful shutdown: a future in ``pool.tasks`` for a remote app still running, so the shutdown waits
    for it and, at its bound, cancels it like a task of its own. (Made then, not per stream: a Future is about
    2,000 instructions a request to make, finish and free.)"""
    if stream.task is RUNNING:
        standin = Standin(loop=pool.loop)
        standin.stream = stream
        stream.task = standin
        pool.tasks.add(standin)


def wake_soon(session) -> None:
    """Streams were queued in the session's home set: its owner is woken once the reads that became ready with
    this one were handled too (their steps are queued already), so connections ready together cost one wake-up
    of a worker, not one each (each is an eventfd write, a GIL handoff and a poll)."""
    homes = session.pool.h2_wakes
    if not homes:
        session.loop.call_soon(_wake_homes, homes)
    homes.add(session.home)


def _wake_homes(homes: set) -> None:
    while homes:
        home = homes.pop()  # (popped first: a failed wake must not leave the set non-empty, never scheduled again)
        try:
            home.wake_h2()
        except OSError:  # its eventfd is closed: the server is going away, its owner serves nothing more
            pass


class Standin(asyncio.Future):
    """What the pool's tasks hold for a remote app at shutdown: done when the app's end is applied
    (``app_finished``);
    cancelling it (shutdown's bound) cancels the app. (No done callback per stream: it would cost a loop
    callback for every request.) The stream is reset at once: the pool's loop may end before the app's end
    comes back, and the connection must close with it."""

    __slots__ = ("stream",)

    def cancel(self, msg=None) -> bool:
        if not super().cancel(msg=msg):
            return False
        stream = self.stream
        stream.cancel_app()
        if not stream.gone:
            stream.session._reset(stream, ErrorCodes.CANCEL)
        return True


def _ops(stream) -> deque:
    """The stream's queue of sends, made when the first one must wait in it (most responses never do: the
    whole response and the app's end are applied at once, ``finish``)."""
    ops = stream.ops
    if ops is None:
        ops = stream.ops = deque()
    return ops


def write(stream, body: bytes, end: bool, reply) -> None:
    _ops(stream).append((WRITE, body, end, reply))
    _pump(stream)


def write_trailers(stream, headers) -> None:
    _ops(stream).append((TRAILERS, headers, True, None))
    _pump(stream)


def finish(stream, body: bytes, exc) -> None:
    """The app's last body and its end, crossed in one post (onworker.run_stream). Most responses: nothing of
    the stream's waits before them and the body fits the windows, so the response and the app's end are applied
    here in one step (``H2Session.end_whole``); otherwise, or if only the HEADERS went, in order by ``_pump``."""
    session = stream.session
    if exc is None and not stream.ops and stream.writer is None and not stream.sent_headers:
        try:
            if not stream.gone and not session.closed and session.end_whole(stream, body):
                return
        except ClientDisconnected:  # (as _pump: the stream closed under the app; its end still applies)
            session.app_finished(stream, None)
            return
    ops = _ops(stream)
    ops.append((WRITE, body, True, None))
    ops.append((DONE, exc, True, None))
    _pump(stream)


def app_ended(stream, exc, ran: bool = True) -> None:
    """The stream's app ended (``ran``: False for one reset while queued, that never started: report.py)."""
    _ops(stream).append((DONE, exc, ran, None))
    _pump(stream)


def _pump(stream) -> None:
    """Apply the stream's queued sends in order; one that must wait for windows goes on in a task, the rest
    after it."""
    session = stream.session
    ops = stream.ops
    while ops and stream.writer is None:
        kind, arg, end, reply = ops.popleft()
        if kind == DONE:
            session.app_finished(stream, arg, end)  # (a DONE's third item: whether the app ran)
            continue
        try:
            if stream.gone or session.closed:
                raise ClientDisconnected("The client reset the stream or left")
            if kind == TRAILERS:
                session.send_trailers(stream, arg)
                session.stream_done(stream)
            elif _write(session, stream, arg, end, reply):
                return  # (the task replies and pumps on)
        except ClientDisconnected as exc:
            _reply(stream, reply, exc)
            continue
        if reply is not None:  # (the last body has none)
            stream.inbox.post(_settle, reply, None)


def _write(session, stream, body: bytes, end: bool, reply) -> bool:
    """True if the write goes on in a task (a window or the socket must open first)."""
    if not stream.sent_headers:
        stream.sent_headers = True
        if session.send_start(stream, body, end):  # (HEADERS and the whole body in one step: most responses)
            if end:
                session.stream_done(stream)
            return False
    if (body or end) and not session.send_data_now(stream, body, end):
        stream.writer = session.loop.create_task(_write_later(session, stream, body, end, reply))
        return True
    if end:
        session.stream_done(stream)
    return False


async def _write_later(session, stream, body: bytes, end: bool, reply) -> None:
    exc = None
    try:
        await session.send_data(stream, body, end)
        if end:
            session.stream_done(stream)
    except ClientDisconnected as error:
        exc = error
    finally:
        stream.writer = None
    _reply(stream, reply, exc)
    _pump(stream)


def _reply(stream, reply, exc) -> None:
    if reply is not None:
        stream.inbox.post(_settle, reply, exc)


# -- on the app's loop -----------------------------------------------------------------------------------------

def _settle(reply, exc) -> None:
    if not reply.done():  # (the app may have been cancelled meanwhile)
        if exc is None:
            reply.set_result(None)
        else:
            reply.set_exception(exc)


async def send_body(stream, body: bytes, end: bool, more: bool) -> None:
    """The app's ``http.response.body``: posted to the pool; with ``more`` it waits for the pool's reply."""
    post = stream.session.pool.h2_inbox.post
    if not more:
        post(write, stream, body, end, None)
        return
    reply = stream.app_loop.create_future()
    post(write, stream, body, end, reply)
    await reply
