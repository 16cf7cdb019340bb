"""SyncWorker threads: an epoll set of connections, each ready request served inline by the thread that saw it.

Follow one request:
1. A listening socket in a ConnectionSet becomes readable; the thread owning that set accepts the connection and
   adds it to the set (level-triggered epoll, EPOLLIN).
2. The connection becomes readable; the same thread (``Connection.on_readable``) does one ``recv``, feeds the bytes
   to its H1Protocol and gets request events.
3. ``Connection._start`` builds the ASGI scope and runs the app as a RequestTask whose first step runs at once, in
   this thread, on this thread's own event loop. A plain request finishes inside that first step: ``send`` wrote the
   head and body with one ``send`` call and the connection simply stays in the set for its next request.
4. If the app awaits something that is not ready (a slow body, a database, ``asyncio.sleep``) the task is pending:
   the connection leaves the epoll set and is served by this thread's loop until the response is done
   (``Connection._go_async``), then goes back into a set.

Ownership: a connection belongs to exactly one of: an epoll set (idle or waiting for bytes), or the thread serving
it. A set belongs to one thread at a time; the monitor (monitor.py) may move it from a thread stuck in app code
to a spare. Nobody else touches a socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
import threading
import time
from collections import deque
from time import perf_counter

from hybrid._speedups.h1 import Data, H1Error, LocalProtocolError, Request
from hybrid.asgi.http import ClientDisconnected, RequestCycle, build_scope
from hybrid.asgi.lifespan import Lifespan, LifespanFailure
from hybrid.asgi.task import BLOCKED_STEP, RequestTask, start_request_task
from hybrid.asgi.websocket import build_websocket_scope

logger = logging.getLogger("hybrid.error")

RECV_SIZE = 65536
ACCEPT_BATCH = 64
POLL_BATCH = 64
MAX_BACKLOG_EVENTS = 64  # pipelined events buffered while a request is pending, before reading pauses
# Unread request body a connection will read and drop after the response, to stay usable; past it, close.
DISCARD_LIMIT = 4 << 20

try:
    import uvloop

    new_event_loop = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio keeps the server usable without it
    new_event_loop = asyncio.new_event_loop


class ConnectionSet:
    """A level-triggered epoll set of listeners and idle connections; owned by one thread at a time."""

    def __init__(self, listeners: list[socket.socket]) -> None:
        self.epoll = select.epoll()
        self.fd = self.epoll.fileno()
        self.conns: dict[int, Connection] = {}
        self.listeners = {sock.fileno(): sock for sock in listeners}
        for fd in self.listeners:
            self.epoll.register(fd, select.EPOLLIN)

    def add(self, conn: Connection) -> None:
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, select.EPOLLIN)
        conn.registered = True
        conn.home = self

    def remove(self, conn: Connection) -> None:
        self.conns.pop(conn.fd, None)
        if conn.registered:
            conn.registered = False
            try:
                self.epoll.unregister(conn.fd)
            except OSError:  # already removed by the monitor at a takeover
                pass

    def stop_accepting(self) -> None:
        for fd in list(self.listeners):
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass
        self.listeners = {}


class Connection:
    __slots__ = (
        "server", "sock", "fd", "proto", "home", "registered", "worker", "loop", "cycle", "backlog",
        "disconnected", "async_mode", "reading", "server_addr", "client_addr", "last_active", "error",
        "discard_budget", "head_since",
    )

    def __init__(self, server, sock: socket.socket, home: ConnectionSet, client_addr, server_addr) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.proto = server.new_protocol()
        self.home = home
        self.registered = False
        self.worker = None
        self.loop = None
        self.cycle: RequestCycle | None = None
        self.backlog: deque = deque()
        self.disconnected = False
        self.async_mode = False
        self.reading = False
        self.server_addr = server_addr
        self.client_addr = client_addr
        self.last_active = time.monotonic()
        self.error: H1Error | None = None
        self.discard_budget = DISCARD_LIMIT
        self.head_since = 0.0

    @property
    def draining(self) -> bool:
        return self.server.draining

    # -- reading ------------------------------------------------------------------------------------------

    def on_readable(self, worker: SyncWorker) -> None:
        """The set owner saw this idle connection readable: read, parse and serve what is complete."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.worker = worker
        self.loop = worker.loop
        now = self.last_active = time.monotonic()
        self._feed(data)
        # A head trickling in byte by byte keeps the connection active; --timeout-request-head bounds it.
        self.head_since = (self.head_since or now) if self.proto.head_in_progress else 0.0
        self._serve()
        self._settle()

    def _feed(self, data: bytes) -> None:
        try:
            events = self.proto.feed(data)
        except H1Error as exc:
            self.error = exc
            events = exc.events  # requests completed before the bad bytes are answered first
        if events:
            self.backlog.extend(events)
            if self.cycle is not None:
                self._route_body()

    def _route_body(self) -> None:
        # Body events right after the current request's head belong to its cycle; a next Request stays queued.
        backlog = self.backlog
        cycle = self.cycle
        while backlog:
            event = backlog[0]
            if type(event) is Request:
                return
            backlog.popleft()
            if type(event) is Data:
                cycle.add_body(event.data)
            else:
                cycle.end_body()
        if self.error is not None and not cycle.body_complete:
            # The rest of the body is malformed or over the limit: it will never complete. The app must not
            # take what came as the whole body, so it sees a disconnect; the client gets the error's status.
            cycle.fail_body()
            self.disconnected = True

    def read_now(self) -> bool:
        """One non-blocking read for a request body the app is waiting for; True if anything happened."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._lost()
            return True
        self._feed(data)
        return True

    def want_read(self) -> None:
        """The pending app waits for bytes: let this thread's loop watch the socket."""
        if not self.reading and not self.disconnected:
            self.reading = True
            self.loop.add_reader(self.fd, self._on_readable_async)

    def _on_readable_async(self) -> None:
        if not self.read_now():
            return
        cycle = self.cycle
        if self.disconnected or self.error is not None:
            self._stop_reading()
        elif cycle is not None and not cycle.wants_body and (
            not cycle.body_complete or len(self.backlog) > MAX_BACKLOG_EVENTS
        ):
            # The app is not reading (a full body buffer, or many pipelined requests queued behind this one):
            # let TCP push back on the client. receive() asks for more when it needs it.
            self._stop_reading()

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def _lost(self) -> None:
        self.disconnected = True
        self._stop_reading()
        if self.cycle is not None:
            self.cycle.wake()

    # -- writing ------------------------------------------------------------------------------------------

    def send_now(self, data):
        """Write without waiting; returns the part the kernel did not take (None when all was sent)."""
        try:
            if type(data) is list:
                sent = self.sock.sendmsg(data)
                data = b"".join(data)
            else:
                sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost()
            raise ClientDisconnected(f"Client disconnected: {exc}") from None
        if sent == len(data):
            return None
        return memoryview(data)[sent:]

    async def finish_write(self, rest) -> None:
        """The kernel did not take everything: this thread's loop sends the rest as the client reads."""
        try:
            await self.loop.sock_sendall(self.sock, rest)
        except OSError as exc:
            self.disconnected = True
            raise ClientDisconnected(f"Client disconnected: {exc}") from None

    # -- serving ------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Run the queued requests one after another while each finishes inline."""
        while self.cycle is None and self.sock is not None:
            if self.backlog:
                event = self.backlog.popleft()
                if type(event) is Request:
                    self._start(event)
                elif type(event) is Data:
                    # The rest of a body the app answered without reading: drop it, up to a bound.
                    self.discard_budget -= len(event.data)
                    if self.discard_budget < 0:
                        self.close()
                        return
            elif self.error is not None:
                self.answer_error(self.error)
                return
            else:
                return

    def _start(self, request: Request) -> None:
        worker = self.worker
        server = self.server
        if request.upgrade is not None:
            self._hand_off_websocket(request)  # (set only under --ws wsproto) to the pool before any app code
            return
        if request.wants_stream or (server.router.active and server.router.wants_pool(
                request.method.decode("latin-1"), request.path.decode("latin-1"))):
            self._hand_off(request, rerun=False)  # a stream: to the async pool before any app code runs
            return
        server.requests += 1
        self.discard_budget = DISCARD_LIMIT
        cycle = RequestCycle(self, request, build_scope(self, request, server.root_path, worker.state))
        self.cycle = cycle
        self._route_body()
        worker.enter_app(self.fd if self.registered else -1)
        # Timed only while other requests are pending in this loop: they are who a blocking first step delays.
        started = perf_counter() if worker.pending else 0.0
        try:
            task = start_request_task(server.app(cycle.scope, cycle.receive, cycle.send), self.loop, worker)
        except BaseException as exc:  # the app object could not even be called
            task = self.loop.create_future()
            task.set_exception(exc)
        finally:
            worker.leave_app(self)
        if started and perf_counter() - started > BLOCKED_STEP:
            worker.step_blocked(task, cycle, perf_counter() - started)
        cycle.task = task
        if task.done():
            self._complete(task)
        else:
            task._hy_cycle = cycle
            worker.pending += 1
            self._go_async()
            task.add_done_callback(self._on_task_done)

    def streaming_started(self, cycle: RequestCycle) -> None:
        """The app starts a streamed response (``more_body=True``) here, in a worker, and nothing has reached
        the client yet. The route is learned, so its next requests go straight to the async pool. A GET or HEAD
        without a body is abandoned now and re-run in the pool; any other method is never run twice: it
        streams from this thread to the end."""
        from hybrid.async_pool import RerunInPool  # (async_pool builds on this module: imported when needed)

        scope = cycle.scope
        self.server.router.learn(scope["method"], scope["path"])
        if scope["method"] in ("GET", "HEAD") and cycle.body_complete and not cycle.body and not any(
            name == b"content-length" or name == b"transfer-encoding" for name, _ in cycle.request.headers
        ):
            cycle.rerun = True
            raise RerunInPool()

    def _hand_off(self, request: Request, *, rerun: bool) -> None:
        """Give this connection to the async pool (StreamingHandoff) and forget it: from here on the pool owns
        the socket, the protocol state and the events read past this request's head."""
        from hybrid.async_pool import StreamingHandoff, request_id_of

        if self.registered:
            self.home.remove(self)
        self._stop_reading()
        sock, self.sock = self.sock, None  # _serve and _settle stop at once: the connection is not ours
        self.cycle = None
        scope = build_scope(self, request, self.server.root_path, {})
        self.server.pool.accept_handoff(StreamingHandoff(
            conn=self, sock=sock, scope=scope, body=b"", request_id=request_id_of(request), request=request,
            body_complete=rerun, rerun=rerun,
        ))

    def _hand_off_websocket(self, request: Request) -> None:
        """A WebSocket upgrade: the pool completes the handshake and runs the app (WebSocketHandoff); the
        H1Protocol has switched protocols, and what the client sent after the head is in its trailing data."""
        from hybrid.async_pool import WebSocketHandoff

        if self.registered:
            self.home.remove(self)
        self._stop_reading()
        sock, self.sock = self.sock, None
        self.cycle = None
        self.backlog.clear()  # (the upgrade request's EndOfMessage: nothing after it is HTTP)
        scope = build_websocket_scope(self, request, self.server.root_path, {})
        self.server.pool.accept_handoff(WebSocketHandoff(
            conn=self, sock=sock, request=request, trailing=self.proto.trailing_data, client=self.client_addr,
            server=self.server_addr, scope=scope,
        ))

    def resume(self, worker: SyncWorker) -> None:
        """Given back by the async pool with requests already read (pipelined behind a stream): this thread
        serves them, then the connection goes back into a set."""
        self.worker = worker
        self.loop = worker.loop
        self._serve()
        self._settle()

    def _go_async(self) -> None:
        # The app awaits: this thread's loop serves the connection until the response is done, so the set
        # must not report it to anyone (its next pipelined bytes are read by us, into the backlog).
        # The socket is watched only once the app waits in receive(): a client's next bytes (or its EOF) wait
        # in the kernel until then, and a response to a client that left fails at its write.
        if self.registered:
            self.home.remove(self)
        self.async_mode = True

    def _on_task_done(self, task) -> None:
        task._hy_worker.pending -= 1
        self._complete(task)
        # Still unregistered and owned by this thread: serve pipelined requests first, then go back to a set.
        self._serve()
        self._settle()

    def _settle(self) -> None:
        """Between requests: a connection that left its set (async serving, takeover) goes back into one."""
        if self.sock is None or self.cycle is not None:
            return
        if self.async_mode:
            self._stop_reading()
            self.async_mode = False
        if self.registered:
            return
        target = self.worker.conn_set or self.home
        try:
            target.add(self)
        except (OSError, ValueError):  # the set is closed: the server is shutting down
            self.close()

    def _complete(self, task) -> None:
        cycle = self.cycle
        exc = None
        if task.cancelled():
            exc = asyncio.CancelledError("the request task was cancelled")
        else:
            exc = task.exception()
        if cycle.rerun and not cycle.wrote and not self.disconnected and self.sock is not None:
            self._hand_off(cycle.request, rerun=True)  # whatever the app did with RerunInPool
            return
        if exc is not None and not isinstance(exc, ClientDisconnected) and not (
            self.draining and isinstance(exc, asyncio.CancelledError)  # streams cut at the graceful timeout
        ):
            logger.error("Exception in ASGI application", exc_info=exc)
        self.cycle = None
        if not cycle.wrote:
            # Nothing reached the client yet: it gets a complete error response.
            if exc is None and not cycle.response_started:
                logger.error("ASGI callable returned without starting a response.")
            if self.error is not None:
                self.answer_error(self.error)  # the request itself was malformed (e.g. its chunked body)
            elif not self.disconnected:
                self._answer_500()
            self.close()
            return
        if not cycle.response_complete:
            if exc is None and not self.disconnected:
                logger.error("ASGI callable returned without completing the response.")
            self.close()  # the client must not take a truncated body for a whole one
            return
        # An exception after a complete response (Starlette's error middleware sends its 500, then re-raises)
        # was logged above; the response was whole and framed, so the connection stays usable. Closing it
        # would race a client that already sent its next request on it (it would get a reset).
        if self.server.access_log:
            self.server.log_access(self, cycle)
        if self.disconnected or (not self.proto.keep_alive and self.error is None):
            self.close()  # (with an error pending, _serve answers it with its status, then closes)
            return
        self.last_active = time.monotonic()

    def _answer_500(self) -> None:
        try:
            out = self.proto.send_response(
                500, [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")], 22
            )
            self.send_now(out + self.proto.send_body(b"Internal Server Error\n", False))
        except (OSError, LocalProtocolError):
            pass

    def answer_error(self, exc: H1Error) -> None:
        """Answer a malformed or timed-out request with its status and close (called by the owner only)."""
        try:
            self.send_now(self.proto.send_error(exc.status_code, exc.reason))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self.sock is None:
            return
        self.home.remove(self)
        self._stop_reading()
        self.disconnected = True
        if self.cycle is not None:
            self.cycle.wake()
        try:
            self.sock.close()
        finally:
            self.sock = None
            self.server.connections.discard(self)


class SyncWorker:
    """One serving thread: a private event loop, and at most one ConnectionSet at a time."""

    def __init__(self, server, name: str) -> None:
        self.server = server
        self.name = name
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lifespan = Lifespan(server.app, server.config.lifespan)
        self.state = self.lifespan.state
        self.conn_set: ConnectionSet | None = None
        self.slot = -1
        self.wake_fd = -1
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self.monitor = server.monitor
        self._stopped: asyncio.Future | None = None
        self.spare_since = 0.0
        self.pending = 0  # requests of this loop still running after their first step
        self._retire_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        """The thread's root task: lifespan startup, serving until ``stop()``, lifespan shutdown.

        One long-lived root task per loop, as ``asyncio.run`` gives uvicorn: anyio (FastAPI's plain ``def``
        endpoints) ties its worker threads to the loop's root task, and without one it would tie them to each
        request's task and start a new thread for every request.
        """
        loop = self.loop
        try:
            await self.lifespan.startup()
        except (LifespanFailure, Exception) as exc:
            self.startup_error = exc
            self.ready.set()
            return
        self._stopped = loop.create_future()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        loop.add_reader(self.wake_fd, self._on_wake)
        self.slot = self.monitor.add_slot(self.wake_fd)
        self.ready.set()
        self._retire_later()
        try:
            await self._stopped
            await self.lifespan.shutdown()
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
            self.stop()
        else:
            self._schedule_retire(max(wait, 1.0))

    def stop(self) -> None:
        """Ask the thread to finish (from any thread): its loop runs lifespan shutdown and ends."""
        stopped = self._stopped
        if stopped is not None:
            self.loop.call_soon_threadsafe(lambda: stopped.done() or stopped.set_result(None))

    # -- set ownership ------------------------------------------------------------------------------------

    def _on_wake(self) -> None:
        try:
            os.eventfd_read(self.wake_fd)
        except BlockingIOError:
            pass
        fd = self.monitor.owned_set(self.slot)
        if fd >= 0 and self.conn_set is None:
            self._own(self.server.sets[fd])
            self.server.threads.ensure_spare()

    def _own(self, conn_set: ConnectionSet) -> None:
        self.conn_set = conn_set
        self.loop.add_reader(conn_set.fd, self._on_ready, conn_set)
        self.loop.call_later(1.0, self._sweep, conn_set)

    def _on_ready(self, conn_set: ConnectionSet) -> None:
        if conn_set is not self.conn_set:  # a takeover gave this set away while this loop was stuck
            self.loop.remove_reader(conn_set.fd)
            return
        for fd, _events in conn_set.epoll.poll(0, POLL_BATCH):
            listener = conn_set.listeners.get(fd)
            if listener is not None:
                self._accept(conn_set, listener)
                continue
            conn = conn_set.conns.get(fd)
            if conn is not None and conn.cycle is None and conn.registered:
                conn.on_readable(self)
            if self.conn_set is not conn_set:
                return  # lost the set mid-batch: its new owner sees the rest (level-triggered)

    def _accept(self, conn_set: ConnectionSet, listener: socket.socket, batch: int = ACCEPT_BATCH) -> None:
        for _ in range(batch):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("Cannot accept connections: %s", exc.strerror)
                return
            self.adopt(conn_set, sock, addr)

    def adopt(self, conn_set: ConnectionSet, sock: socket.socket, addr) -> None:
        """An accepted socket joins ``conn_set`` (this thread owns it; at shutdown the main thread's last
        accepts are posted here)."""
        server = self.server
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = addr[:2]
            local = sock.getsockname()[:2]
        else:
            client = None
            local = (sock.getsockname() or server.config.uds, None)
        conn = Connection(server, sock, conn_set, client, local)
        server.connections.add(conn)
        try:
            conn_set.add(conn)
        except (OSError, ValueError):  # the set is closed: the server is going away
            conn.close()

    def _sweep(self, conn_set: ConnectionSet) -> None:
        """Once a second: close keep-alive connections idle longer than --timeout-keep-alive, and answer 408 to
        clients whose request head is not complete --timeout-request-head after its first byte."""
        if conn_set is not self.conn_set:
            return
        now = time.monotonic()
        idle_deadline = now - self.server.config.timeout_keep_alive
        head_deadline = now - self.server.config.timeout_request_head
        for conn in list(conn_set.conns.values()):
            if conn.cycle is not None or not conn.registered:
                continue
            if conn.head_since and conn.head_since < head_deadline:
                conn.answer_error(H1Error(408, "Request header timeout"))
            elif conn.last_active < idle_deadline:
                conn.close()
        self.loop.call_later(1.0, self._sweep, conn_set)

    def close_the_door(self, done: threading.Event) -> None:
        """Shutdown, step 1, on this thread: accept every connection already queued in the kernel (its client
        sent its request believing it was accepted; closing the listener would reset it), then stop accepting.
        The accepted connections are served like any other, answered with ``connection: close``."""
        conn_set = self.conn_set
        try:
            if conn_set is not None:
                for listener in list(conn_set.listeners.values()):
                    self._accept(conn_set, listener, batch=1 << 16)
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
            if conn.cycle is None and conn.registered and conn.last_active < deadline:
                conn.close()
        if conn_set.conns:
            self.loop.call_later(grace / 5, self.drain, grace)

    # -- app steps, for the monitor -------------------------------------------------------------------------

    def step_blocked(self, task, cycle, took: float) -> None:
        """A step of app code held this thread's loop for ``took`` seconds: report it if others waited."""
        waiting = sum(1 for t in asyncio.all_tasks(self.loop) if isinstance(t, RequestTask) and t is not task
                      and not t.done())
        if waiting:
            self.server.blocked_loop(cycle, took, waiting, self.name)

    def enter_app(self, fd: int) -> None:
        self.monitor.enter(self.slot, fd)

    def leave_app(self, conn: Connection | None) -> None:
        if self.monitor.leave(self.slot):
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
