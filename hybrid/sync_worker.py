"""SyncWorker threads: each owns an epoll set of connections and serves a ready request inline, on its own loop.

Follow one request: a listening socket in the thread's ConnectionSet becomes readable; the thread accepts the
connection and adds it to the set (level-triggered epoll, EPOLLIN). When the connection becomes readable the same
thread serves it (``Connection.on_readable``, connection.py): no hop between threads.

A set belongs to one thread at a time; the monitor (monitor.py) may move it from a thread stuck in app code to a
spare, which carries on serving it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time

from hybrid._speedups.h1 import H1Error
from hybrid._speedups.held import LoopHeld
from hybrid._speedups.monitor import LEFT_FLAGGED, LEFT_LOST
from hybrid.asgi.lifespan import Lifespan, LifespanFailure
from hybrid.asgi.task import RequestTask, child_task_factory
from hybrid.connection import (
    Connection,
    ConnectionSet,
    accept_into,
    accepted_addresses,
    still_sending,
    unread_bytes,
    unsent_bytes,
)
from hybrid.loops import new_event_loop
from hybrid.mailbox import Mailbox

logger = logging.getLogger("hybrid.error")

ACCEPT_BATCH = 64
POLL_BATCH = 64



def run_own_loop(owner) -> None:
    """The body of a loop thread (a SyncWorker, the AsyncPool): a new loop in ``owner.loop`` runs ``owner._main()``
    to its end, then closes."""
    loop = owner.loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(owner._main())
    finally:
        loop.close()


class SyncWorker:
    """One serving thread: a private event loop, and at most one ConnectionSet at a time."""

    def __init__(self, server, name: str) -> None:
        self.server = server
        self.name = name
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lifespan = Lifespan(server.app, server.config.lifespan, server.lifespan_order,
                                 f"the loop of thread {name}")
        self.state = self.lifespan.state
        self.conn_set: ConnectionSet | None = None
        self.slot = -1
        self.ident = 0  # threading.get_ident() of the thread (the stack sampler's key)
        self.wake_fd = -1
        self.inbox: Mailbox | None = None  # what the pool posts to this loop (HTTP/2 streams' apps run here)
        self.loop_held: LoopHeld | None = None  # responses completed in this loop's callbacks (held.pyx)
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self.monitor = server.monitor
        self._stopped: asyncio.Future | None = None
        self.spare_since = 0.0
        self.pending = 0  # requests of this loop still running after their first step
        self._retire_timer: asyncio.TimerHandle | None = None
        self.retiring = False
        self.shutdown_deadline: float | None = None  # (monotonic) lifespan shutdown is abandoned then

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        run_own_loop(self)

    async def _main(self) -> None:
        """The thread's root task: lifespan startup, serving until ``stop()``, lifespan shutdown.

        One long-lived root task per loop, as ``asyncio.run`` gives uvicorn: anyio (FastAPI's plain ``def``
        endpoints) ties its worker threads to the loop's root task, and without one it would tie them to each
        request's task and start a new thread for every request.
        """
        loop = self.loop
        loop.set_task_factory(child_task_factory)  # tasks the app starts in a request are timed app code too
        try:
            await self.lifespan.startup()
        except (LifespanFailure, Exception) as exc:
            self.startup_error = exc
            self.ready.set()
            return
        self._stopped = loop.create_future()
        self.inbox = Mailbox(loop)
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        loop.add_reader(self.wake_fd, self._on_wake)
        self.ident = threading.get_ident()
        self.loop_held = LoopHeld(loop)
        self.slot = self.monitor.add_slot(self.wake_fd)
        self.ready.set()
        self._retire_later()
        try:
            await self._stopped
            await self.lifespan.shutdown(in_order=not self.retiring, deadline=self.shutdown_deadline)
        finally:
            if self.slot >= 0:
                self.monitor.remove_slot(self.slot)
            loop.remove_reader(self.wake_fd)
            os.close(self.wake_fd)
            self.server.threads.exited(self)

    def _retire_later(self) -> None:
        """This thread just became a spare: check again once it has been idle for the retire delay."""
        self.spare_since = time.monotonic()
        self._schedule_retire(self.server.threads.spare_idle_timeout)

    def _schedule_retire(self, delay: float) -> None:
        if self._retire_timer is not None:
            self._retire_timer.cancel()
        self._retire_timer = self.loop.call_later(delay, self._maybe_retire)

    def _maybe_retire(self) -> None:
        """A spare idle this long ends (its lifespan shutdown runs), as long as another spare remains."""
        self._retire_timer = None
        if self.conn_set is not None or self._stopped is None or self._stopped.done():
            return  # serving a set: it becomes a spare again only through a takeover, which re-arms this
        wait = self.spare_since + self.server.threads.spare_idle_timeout - time.monotonic()
        busy = any(isinstance(t, RequestTask) and not t.done() for t in asyncio.all_tasks(self.loop))
        if wait <= 0 and not busy and self.monitor.retire(self.slot):
            self.slot = -1
            self.retiring = True  # (its lifespan ends now, whatever started after it: see LifespanOrder)
            self.stop()
        else:
            self._schedule_retire(max(wait, 1.0))

    def stop(self, deadline: float | None = None) -> None:
        """Ask the thread to finish (from any thread): its loop runs lifespan shutdown (until ``deadline``) and
        ends."""
        self.shutdown_deadline = deadline
        stopped = self._stopped
        if stopped is not None:
            self.loop.call_soon_threadsafe(lambda: stopped.done() or stopped.set_result(None))

    # -- set ownership ------------------------------------------------------------------------------------

    def _on_wake(self, initial: bool = False) -> None:
        try:
            os.eventfd_read(self.wake_fd)
        except BlockingIOError:
            pass
        fd = self.monitor.owned_set(self.slot)
        if fd >= 0 and self.conn_set is None:
            if not initial and self.server.lifecycle is not None:
                self.server.lifecycle_taken_over(self.name, fd)
            self._own(self.server.sets[fd])
            self.server.threads.ensure_spare()

    def _own(self, conn_set: ConnectionSet) -> None:
        self.conn_set = conn_set
        conn_set.held.flush()  # (a takeover: what the stuck thread held for the set's idle connections)
        if conn_set.batch is not None:  # the rest of a batch cut by this takeover: before the next poll
            self.loop.call_soon(self._on_ready, conn_set, conn_set.batch)
        self.loop.add_reader(conn_set.fd, self._on_ready, conn_set)
        self.loop.call_later(1.0, self._sweep, conn_set)

    def _on_ready(self, conn_set: ConnectionSet, batch=None) -> None:
        """Serve a batch of ready events of the set: a new poll, or ``batch``, what is left of the previous
        owner's (a takeover cut it)."""
        if conn_set is not self.conn_set:  # a takeover gave this set away while this loop was stuck
            self.loop.remove_reader(conn_set.fd)
            return
        held = conn_set.held  # responses held until the batch ends (hybrid/held_write.py)
        if batch is None:
            # Kept in the set: if a handler blocks mid-batch, the spare that takes the set over serves the rest
            # first (``_own``). A new poll would list them behind the connections served earlier in the batch
            # (their clients' next requests keep their old places in epoll's ready list): each takeover cost them
            # a round (docs/performance.md, "Blocking mix: where the slowest fast requests waited").
            batch = conn_set.batch = iter(conn_set.epoll.poll(0, POLL_BATCH))
        try:
            for fd, _events in batch:
                listener = conn_set.listeners.get(fd)
                if listener is not None:
                    self._accept(conn_set, listener)
                    continue
                conn = conn_set.conns.get(fd)
                if conn is not None and conn.cycle is None and conn.registered:
                    conn.on_readable(self, held)  # (one still served through its loop only leaves the set)
                elif conn is not None and conn.async_mode and conn.registered:
                    conn.leave_set()  # (a request awaiting: Connection._go_async)
                elif fd == conn_set.wake_fd:
                    self._serve_resumed(conn_set)
                if self.conn_set is not conn_set:
                    return  # lost the set mid-batch: its new owner serves the rest (conn_set.batch) first
        finally:
            if held:
                held.flush()

    def _serve_resumed(self, conn_set: ConnectionSet) -> None:
        """Connections given back to the set with requests already read (``ConnectionSet.add_ready``), and
        HTTP/2 streams whose apps run here (``ConnectionSet.wake_h2``)."""
        streams = conn_set.h2_streams
        # With streams waiting behind the first, the wake-up's eventfd is read only once they ran: set, it tells
        # the monitor the set has work, so if an app's step blocks, the spare taking over runs the rest. (Armed
        # again by a write instead, it cost a write, a read and one more poll of the set a batch.)
        armed = len(streams) > 1
        resumed = conn_set.resumed if armed else conn_set.take_ready()
        while True:
            if streams:
                from hybrid.h2.onworker import run_stream

                while streams:
                    try:
                        stream = streams.popleft()
                    except IndexError:  # (a spare that took the set over emptied it)
                        break
                    run_stream(self, stream)
                    if self.conn_set is not conn_set:  # a step blocked, the set was taken over: the spare goes on
                        os.eventfd_write(conn_set.wake_fd, 1)
                        return
            while resumed:
                conn = resumed.popleft()
                if conn.cycle is None and conn.registered and conn.home is conn_set:  # (else served, or gone)
                    conn.resume(self)
                if self.conn_set is not conn_set:  # lost the set to a takeover: its new owner serves the rest
                    if resumed:
                        os.eventfd_write(conn_set.wake_fd, 1)
                    return
            if not armed:
                return
            armed = False
            conn_set.take_ready()  # (then what was queued before this read: its write may have come before it)
            if not streams and not resumed:
                return

    def _accept(self, conn_set: ConnectionSet, listener: socket.socket, batch: int = ACCEPT_BATCH,
                limited: bool = True) -> None:
        accept_into(listener, lambda sock, addr: self.adopt(conn_set, sock, addr), batch,
                    self.server.connection_limit if limited else None)

    def adopt(self, conn_set: ConnectionSet, sock: socket.socket, addr) -> None:
        """An accepted socket joins ``conn_set`` (this thread owns it; at shutdown the main thread's last
        accepts are posted here)."""
        server = self.server
        client, local = accepted_addresses(sock, addr, server.config.uds)
        try:
            conn = server.connection_class(server, sock, conn_set, client, local)  # TLSConnection with TLS on
        except OSError:  # (TLS) the client reset before its socket could be wrapped
            sock.close()
            return
        server.connections.add(conn)
        if server.lifecycle is not None:
            server.lifecycle_opened(conn)
        try:
            conn_set.add(conn)
        except (OSError, ValueError):  # the set is closed: the server is going away
            conn.close()
            return
        if conn.handshake_deadline:
            # TLS: a client sends its ClientHello right after its ACK, so it is usually here already: its first
            # handshake step now, not after one more epoll round (two epoll calls and a loop iteration per new
            # connection); when it is not here yet, one read(2) that says EAGAIN and the set waits as before.
            conn.on_readable(self)

    def _sweep(self, conn_set: ConnectionSet) -> None:
        """Once a second: close keep-alive connections idle longer than --timeout-keep-alive and TLS handshakes
        older than --timeout-tls-handshake, answer 408 to clients whose request head is not complete
        --timeout-request-head after its first byte, and close those still sending a body their app did not
        read --timeout-request-body after the response (the first byte dropped)."""
        if conn_set is not self.conn_set:
            return
        now = time.monotonic()
        config = self.server.config
        idle_deadline = now - config.timeout_keep_alive
        head_deadline = now - config.timeout_request_head
        body_deadline = now - config.timeout_request_body
        for conn in list(conn_set.conns.values()):
            if conn.cycle is not None or conn.async_mode or not conn.registered:
                continue  # (async_mode: still its serving thread's, maybe one that lost this set to us)
            if conn.handshake_deadline and conn.handshake_deadline < now:
                conn.close()  # a TLS client silent or trickling past --timeout-tls-handshake
            elif conn.head_since and conn.head_since < head_deadline:
                conn.answer_error(H1Error(408, "Request header timeout"))
            elif conn.discard_since and conn.discard_since < body_deadline:
                conn.close()  # an unread body still arriving: the response went out long ago
            elif conn.last_active < idle_deadline and not still_sending(conn, unsent_bytes(conn.fd), now,
                                                                        config.timeout_write_stall) \
                    and not unread_bytes(conn.fd):  # (a request came while this thread could not read: serve it)
                conn.close()
        self.loop.call_later(1.0, self._sweep, conn_set)

    def close_the_door(self, done: threading.Event, conn_set: ConnectionSet | None = None) -> None:
        """Shutdown, step 1, on this thread: accept every connection already queued in the kernel (its client
        sent its request believing it was accepted; closing the listener would reset it), then stop accepting.
        The accepted connections are served like any other, answered with ``connection: close``. ``conn_set``:
        the set the monitor says this thread owns (it may not have taken it up yet)."""
        conn_set = conn_set or self.conn_set
        try:
            if conn_set is not None:
                for listener in list(conn_set.listeners.values()):
                    self._accept(conn_set, listener, batch=1 << 16, limited=False)
                conn_set.stop_accepting()
        finally:
            done.set()

    def drain(self, grace: float) -> None:
        """Shutdown: close the owned set's connections once idle for ``grace`` seconds; repeat until none."""
        conn_set = self.conn_set
        if conn_set is None:
            return
        deadline = time.monotonic() - grace
        for conn in list(conn_set.conns.values()):
            if conn.cycle is None and not conn.async_mode and conn.registered and conn.last_active < deadline:
                conn.close()
        # Again until the loop stops: a connection whose response was served through the loop (its head sent
        # before the shutdown, so without connection: close) rejoins the set later and is closed once idle too.
        self.loop.call_later(grace / 5, self.drain, grace)

    # -- app steps, for the monitor -------------------------------------------------------------------------

    def step_blocked(self, task, cycle, took: float) -> None:
        """A step of app code held this thread's loop for ``took`` seconds: report it if others waited."""
        waiting = sum(1 for t in asyncio.all_tasks(self.loop) if isinstance(t, RequestTask) and t is not task
                      and not t.done())
        if waiting:
            self.server.blocked_loop(cycle, took, waiting, self.name)

    # The compiled request path marks each step of app code with the monitor directly (``self.monitor``,
    # ``self.slot``: monitor.pxd's C calls) and calls ``left_blocked`` when ``leave`` reports a blocked step; these
    # are the same marks for Python callers.
    def enter_app(self, fd: int) -> None:
        self.monitor.enter(self.slot, fd)

    def leave_app(self, conn: Connection | None, cycle=None) -> None:
        """The step of app code is over. ``conn``: the connection served inline (its set may have been taken
        over); ``cycle``: the request of a later step (names the route if the step blocked)."""
        if self.monitor.leave(self.slot):  # (rare: the step blocked)
            self.left_blocked(conn, cycle)

    def left_blocked(self, conn: Connection | None, cycle) -> None:
        """``monitor.leave`` said the step blocked: its set was taken over (LEFT_LOST) and/or its stack was read
        while it blocked (LEFT_FLAGGED)."""
        left, began, seq = self.monitor.left_step(self.slot)
        if left & LEFT_LOST:
            # The monitor moved our set to a spare while the app held this thread; the connection we were
            # serving was taken out of the set, so it is ours until its response is done.
            conn_set = self.conn_set
            self.conn_set = None
            if conn_set is not None:
                self.loop.remove_reader(conn_set.fd)
            if conn is not None and conn.registered:
                conn.registered = False
                conn.home.conns.pop(conn.fd, None)
            self._retire_later()
        if left & LEFT_FLAGGED:  # where it blocked (docs/blocking.md): the sampler read it while it was blocked
            took = time.monotonic() - began
            sampler = self.server.sampler
            sample = sampler.take(self.ident, seq=seq) if sampler is not None else None
            if cycle is None and conn is not None:
                cycle = conn.cycle
            where = f"{self.name}, its other connections taken over" if left & LEFT_LOST else self.name
            self.server.blocking_sites.record(cycle, sample, took, where)
