"""The AsyncPool: one event loop (uvloop) in its own thread for long-lived connections.

Streams (SSE, token streams, any response sent with ``more_body=True``) and WebSockets live here, where no
blocking handler in a SyncWorker thread can freeze them: a worker thread's loop stops while a handler in that thread
blocks, and everything pending in it stops too. A worker hands a connection over with a *handoff* (a frozen
dataclass) and never touches it again; the pool wraps the socket in a ``SocketStream`` (compiled,
``hybrid/_speedups/streams.pyx``) and continues the ASGI cycle with the same ``H1Protocol`` and ``RequestCycle`` the
worker used, so framing and ASGI semantics are the same code. When a streamed response ends on a keep-alive
connection, the socket goes back to its home epoll set, with any requests the client pipelined behind the stream:
a worker serves those, so no blocking handler ever runs on the pool's loop.

What goes to the pool (decided in ``SyncWorker``/``Connection._start``, see ``StreamRouter``):
- requests whose Accept includes ``text/event-stream``, paths matching ``--async-path``, and routes learned as
  streaming: before any app code runs. A request whose app starts streaming in a worker is never run again here
  (the app runs exactly once per request): it streams from the worker to its end, and its route is learned, so
  the next request of it comes here first.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybrid._speedups.h1 import Request
from hybrid._speedups.steps import TimedCoroutine
from hybrid._speedups.stream_connection import StreamConnection
from hybrid._speedups.streams import SocketStream, StreamClosed
from hybrid.asgi.http import ClientDisconnected, RequestCycle, build_scope
from hybrid.asgi.lifespan import Lifespan
from hybrid.asgi.task import BLOCKED_STEP
from hybrid.connection import Connection, stall_tick, unsent_bytes
from hybrid.shutdown import check_startup, wait_until
from hybrid.sync_worker import run_own_loop

if TYPE_CHECKING:
    from hybrid.asgi.websocket import WebSocketSession

logger = logging.getLogger("hybrid.error")

LEARNED_ROUTES_MAX = 1024
_UUID_OR_NUMBER = re.compile(r"^(\d+|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$")


@dataclass(frozen=True, slots=True)
class StreamingHandoff:
    conn: Connection       # the worker's connection: H1Protocol state, addresses, events read past the head
    sock: object           # its socket (the worker let go of it: conn.sock is None from the handoff on)
    scope: dict            # the request's scope as the worker built it (the pool gives it the pool's state)
    request_id: str        # the request's id (request_id.py), also in the scope and the access log
    request: Request       # the head, still unanswered in ``conn.proto`` (its body events are in ``conn.backlog``)


@dataclass(frozen=True, slots=True)
class WebSocketHandoff:
    conn: Connection       # the worker's connection (its H1Protocol switched protocols after this request's head)
    sock: object           # its socket (the worker let go of it: conn.sock is None from the handoff on)
    request: Request       # the upgrade request's head
    trailing: bytes        # bytes the client sent after the head (WebSocket frames), already read by the worker
    client: tuple | None
    server: tuple | None
    scope: dict            # the websocket scope as the worker built it (the pool gives it the pool's state)


class StreamRouter:
    """Which requests go to the pool before any app code runs: ``--async-path`` globs and learned routes.

    A route is (method, path shape): numeric and UUID-like path segments become ``{}``, so ``/items/1/stream``
    and ``/items/2/stream`` are one route. The learned set is an LRU of ``LEARNED_ROUTES_MAX`` routes.
    """

    def __init__(self, patterns: tuple[str, ...] = ()) -> None:
        self._patterns = re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
        self._learned: OrderedDict = OrderedDict()
        self.active = self._patterns is not None  # checked per request: nothing to match, nothing to pay

    @staticmethod
    def shape(method: str, path: str) -> tuple[str, str]:
        segments = path.split("/")
        return method, "/".join("{}" if _UUID_OR_NUMBER.match(s) else s for s in segments)

    def wants_pool(self, method: str, path: str) -> bool:
        if self._patterns is not None and self._patterns.match(path):
            return True
        if not self._learned:
            return False
        key = self.shape(method, path)
        if key in self._learned:
            self._learned.move_to_end(key)
            return True
        return False

    def learn(self, method: str, path: str) -> None:
        key = self.shape(method, path)
        if key not in self._learned:
            logger.debug("Learned streaming route %s %s (%d learned)", key[0], key[1], len(self._learned) + 1)
        self._learned[key] = True
        self._learned.move_to_end(key)
        self.active = True
        while len(self._learned) > LEARNED_ROUTES_MAX:
            self._learned.popitem(last=False)


class PoolConnection(StreamConnection):
    """A handed-off connection served by the pool's loop: the worker Connection's logic over a SocketStream."""

    __slots__ = ("pool", "flusher", "scheme", "request_id")
    HOLD_FIRST_CHUNK = False  # a stream's first chunk goes out at once
    in_pool = True  # (shutdown waits for worker connections, then drains the pool's)

    def __init__(self, pool: AsyncPool, handoff: StreamingHandoff) -> None:
        old = handoff.conn
        self.server = old.server
        self.sock = handoff.sock
        self.fd = handoff.sock.fileno()
        self.proto = old.proto
        self.home = old.home
        self.registered = False
        self.worker = None
        self.loop = pool.loop
        self.cycle = None
        self.backlog = old.backlog
        self.disconnected = False
        self.async_mode = True
        self.reading = False
        self.body_timer = None
        self.server_addr = old.server_addr
        self.client_addr = old.client_addr
        self.proxy = old.proxy
        self.scheme = old.scheme
        self.last_active = time.monotonic()
        self.error = old.error
        self.discard_budget = old.discard_budget
        self.head_since = 0.0
        self.pool = pool
        self.request_id = handoff.request_id
        self.flusher = None
        self.stream = SocketStream(handoff.sock, pool.loop)

    # -- I/O over the stream: reading and send_now are StreamConnection's (compiled), the rest Connection's --------

    async def finish_write(self, rest) -> None:
        stream = self.stream
        stall = self.server.config.timeout_write_stall
        tick = stall_tick(stall)
        loop = self.pool.loop
        progress = loop.time()
        try:
            # Progress is the client taking bytes: the stream's buffer plus the kernel's send queue shrinking,
            # looked at every tick (see Connection.finish_write); a stall is counted from the last progress.
            before = stream.write_buffer_size() + unsent_bytes(self.fd)
            while True:
                try:
                    async with asyncio.timeout(tick):
                        await stream.drain()
                    return
                except TimeoutError:
                    now = stream.write_buffer_size() + unsent_bytes(self.fd)
                    if now < before:
                        progress = loop.time()
                    elif loop.time() - progress >= stall:
                        break  # the client took nothing for a whole period
                    before = now
        except (StreamClosed, OSError) as exc:
            self._lost()
            raise ClientDisconnected(f"Client disconnected: {exc}") from None
        logger.info("Closed a stream whose client read none of it for %g s (--timeout-write-stall).", stall)
        cut = ClientDisconnected("Client stopped reading the response")
        cut.unsent = stream.write_buffer_size()  # (for the access log, as in Connection.finish_write)
        self._lost()
        raise cut

    # -- serving -------------------------------------------------------------------------------------------

    def response_complete(self, cycle: RequestCycle) -> None:
        """(The pool gives the connection back when the app is done.)"""

    def streaming_started(self, cycle: RequestCycle) -> None:
        self.server.router.learn(cycle.scope["method"], cycle.scope["path"])

    def _start(self, request: Request) -> None:
        server = self.server
        pool = self.pool
        server.requests += 1
        self.discard_budget = 1 << 22
        cycle = RequestCycle(self, request, build_scope(self, request, server.root_path, pool.state,
                                                              self.request_id))
        self.cycle = cycle
        if server.lifecycle is not None:
            server.lifecycle_started(self, cycle)
        self._route_body()
        cycle.task = pool.start_app(cycle.scope, cycle.receive, cycle.send, cycle, self._on_task_done)

    def _on_task_done(self, task) -> None:
        self.pool.tasks.discard(task)
        cycle = self.cycle
        self._complete(task)
        if cycle is not None:
            cycle.task = None  # (cycle -> task -> its TimedCoroutine -> cycle: no garbage cycle per stream)
        self._serve()
        self._settle()

    def _serve(self) -> None:
        """The pool serves the handed-off request only: whatever the client sent after it goes back to a worker
        with the connection (``_settle``), so a blocking handler never runs on the pool's loop."""

    def _settle(self) -> None:
        """After a response: give the socket back to its home epoll set, with the protocol state (a next head
        may be half read) and the events already read. Requests the client pipelined behind the stream go back
        too and are served by a worker thread: the pool runs streams only, so a blocking handler among them
        cannot stall the pool's other streams."""
        if self.sock is None or self.cycle is not None:
            return
        stream = self.stream
        if self.server.draining or stream.peer_gone:
            self.close()
            return
        if stream.write_buffer_size():
            # The response's tail still waits for a slow reader: flush it, then settle (on a loop callback,
            # never inside a task: a worker may start the next request's first step right away).
            if self.flusher is None:
                self.flusher = self.loop.create_task(self._flush_then_settle())
            return
        # Reading for the app (it awaited receive() for a disconnect) stops first: what the stream read past
        # this response goes back with the socket, as events for the worker.
        self._stop_reading()
        sock, unread = stream.detach()
        if unread:
            self._feed(unread)
        cls = self.server.connection_class
        if cls is Connection:
            conn = Connection(self.server, sock, self.home, self.client_addr, self.server_addr)
        else:  # a TLSConnection keeps its SSLSocket, handshake long done
            conn = cls(self.server, sock, self.home, self.client_addr, self.server_addr, handshaken=True)
        conn.proto = self.proto
        conn.backlog = self.backlog
        conn.error = self.error
        conn.head_since = time.monotonic() if self.proto.head_in_progress else 0.0
        self.sock = None
        self.server.connections.discard(self)
        self.server.connections.add(conn)
        try:
            if conn.error is not None or any(type(event) is Request for event in conn.backlog):
                self.home.add_ready(conn)  # whoever owns the set serves them at once (not a blocked thread)
            else:
                self.home.add(conn)  # registering is thread-safe; the set's owner sees the next bytes
        except (OSError, ValueError):
            conn.close()

    async def _flush_then_settle(self) -> None:
        try:
            while self.stream.write_buffer_size() and not self.stream.peer_gone:
                await self.stream.drain()
                if self.stream.write_buffer_size():
                    await asyncio.sleep(0.01)  # drain() returns below its high-water mark; the rest goes soon
        except (StreamClosed, OSError):
            pass
        finally:
            self.flusher = None
        self.loop.call_soon(self._settle)

    def close(self) -> None:
        if self.sock is None:
            return
        self.disconnected = True
        self._stop_reading()
        self.cancel_body_timer()
        if self.cycle is not None:
            self.cycle.wake()
        if self.server.lifecycle is not None:
            self.server.lifecycle_closed(self.fd)
        self.sock = None
        self.server.forget(self)
        # (TLS close_notify unless a response is cut short: see hybrid/tls_info.py)
        self.pool.close_later(self.stream, notify=not self.proto.mid_response)
        self.proto.release()  # (no reference cycle left for the collector)


class AsyncPool:
    """One uvloop loop in its own thread, serving handed-off connections as tracked tasks."""

    connection_type = PoolConnection

    def __init__(self, config, app, *, shutdown_event=None, ssl_context=None, lifecycle_collector=None,
                 server=None) -> None:
        self.config = config
        self.app = app
        self.server = server
        self.shutdown_event = shutdown_event
        self.ssl_context = ssl_context
        self.lifecycle_collector = lifecycle_collector
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lifespan = Lifespan(app, config.lifespan, getattr(server, "lifespan_order", None),
                                 "the async pool's loop")
        self.state = self.lifespan.state
        self.tasks: set[asyncio.Task] = set()
        self.closing: set[asyncio.Task] = set()
        self.websockets: set[WebSocketSession] = set()
        self.h2_sessions: set = set()  # HTTP/2 connections (hybrid/h2/session.py)
        # (a Mailbox: what other threads post to this loop: workers running HTTP/2 streams' apps, h2/crossing.py;
        # WebSocket sends from other loops, asgi/crossloop.py)
        self.h2_inbox = None
        self.h2_wakes: set = set()  # home sets with HTTP/2 streams queued in this loop iteration (crossing.wake_soon)
        # HTTP/2 streams whose apps run on workers (H2Session._start): a graceful shutdown waits for them too
        self.h2_remote: set = set()
        self.drained = threading.Event()  # (set by _drain at shutdown: streams done, lifespan shutdown next)
        self.handoffs = 0
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="hybrid-async-pool", daemon=True)
        self._stopped: asyncio.Future | None = None
        self.shutdown_clock = None  # (a ShutdownClock, set by the server) bounds the lifespan shutdown

    def set_lifespan_state(self, state: dict) -> None:
        """Replace the state requests in the pool see (``scope["state"]`` is a copy of it)."""
        self.state = state

    # -- thread ------------------------------------------------------------------------------------------

    def start(self, deadline: float | None = None, abort=lambda: False) -> None:
        """Start the loop and wait for its lifespan startup (until ``deadline``, or a signal: ``abort()``)."""
        self.thread.start()
        if deadline is not None:
            check_startup(wait_until(self.ready, deadline, abort), "the async pool", self.config.timeout_startup)
        self.ready.wait()
        if self.startup_error is not None:
            raise self.startup_error

    def run(self) -> None:
        """Blocking: the pool's loop, from lifespan startup to lifespan shutdown."""
        watch = self.server.watch_loop()  # (a step that blocks this loop is captured: docs/blocking.md)
        try:
            run_own_loop(self)
        finally:
            self.server.unwatch_loop(watch)

    async def _main(self) -> None:
        try:
            await self.lifespan.startup()
        except Exception as exc:  # noqa: BLE001 - reported by start()
            self.startup_error = exc
            self.ready.set()
            return
        self.state = self.lifespan.state
        self._stopped = self.loop.create_future()
        self.ready.set()
        await self._stopped
        clock = self.shutdown_clock  # (its deadline counts from now: after the streams had theirs)
        await self.lifespan.shutdown(deadline=None if clock is None else clock.lifespan_deadline())

    def stop(self, timeout: float | None, join: bool = True) -> None:
        """From any thread: let open streams finish for ``timeout`` seconds (None: until they end), close the
        rest, run lifespan shutdown, end the thread. With ``join=False`` it returns once the streams are done
        and closed; ``join()`` then waits for the lifespan shutdown and the thread's end (the server stops the
        worker loops in between: lifespans end in reverse order of their start, LifespanOrder)."""
        if self.loop is None or self._stopped is None or not self.thread.is_alive():
            return
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._drain(timeout)))
        if join:
            self.thread.join()
        else:
            while not self.drained.wait(0.05) and self.thread.is_alive():
                pass

    def join(self, deadline: float | None = None) -> None:
        if self.thread.ident is not None and self.thread.is_alive():
            self.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    async def _drain(self, timeout: float | None) -> None:
        started = time.monotonic()
        sessions = list(self.websockets)
        for session in sessions:
            session.shutdown()  # close 1001 (Going Away); their apps get websocket.disconnect and must return
        for session in list(self.h2_sessions):
            session.shutdown()  # GOAWAY with the last stream taken: those finish below, later ones are refused
        if self.h2_remote:  # (h2 imported only then: a server that served no HTTP/2 never imports it)
            from hybrid.h2.crossing import stand_in

            for stream in list(self.h2_remote):
                stand_in(self, stream)  # (a future for each remote app, waited for and cancelled as a task is)
        if self.tasks:
            logger.info("Waiting up to %.0f s for %d open stream(s)", timeout, len(self.tasks))
            _done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("Closed %d stream(s) still open after the graceful timeout (%.0f s).", len(pending),
                               timeout)
                await asyncio.wait(pending, timeout=self._cleanup_budget())  # (cancelled apps unwind at once)
        if self.closing:
            # Closing streams flush what slow readers have not taken: briefly, then their sockets just close
            # (cancelling a close closes at once).
            _done, pending = await asyncio.wait(set(self.closing), timeout=self._cleanup_budget())
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self._cleanup_budget())  # (cancelled apps unwind at once)
        await self._websockets_closed(sessions, started, timeout)
        if self.h2_sessions:
            # HTTP/2 connections whose streams all ended on our side but wait for a client's END_STREAM (a
            # WebSocket's, bounded by --ws-close-timeout): closed now, not left to die with the loop unreported.
            for session in list(self.h2_sessions):
                session.close()
            if self.closing:  # (their sockets flush and close: briefly, as above)
                await asyncio.wait(set(self.closing), timeout=self._cleanup_budget())
        self.drained.set()
        self._stopped.set_result(None)

    async def _websockets_closed(self, sessions: list, started: float, timeout: float | None) -> None:
        """Wait for the close handshakes of the WebSockets closed with 1001 (each bounded by --ws-close-timeout),
        within the streams' bound: a socket still open after this is one the bound cut off, and the server's
        "timed out" warning says only that."""
        sessions = set(sessions) | self.websockets  # (one handed over while draining is closed at its accept)
        end = started + (self.config.ws_close_timeout if timeout is None else timeout)
        while any(session.sock is not None for session in sessions) and time.monotonic() < end:
            await asyncio.sleep(0.01)

    def _cleanup_budget(self) -> float:
        """How long one step of closing streams may wait: 1 s, but within --timeout-graceful-shutdown at most half
        of what is left of it (lifespan shutdown comes after)."""
        end = None if self.shutdown_clock is None else self.shutdown_clock.end
        return 1.0 if end is None else max(0.0, min(1.0, (end - time.monotonic()) / 2))

    # -- handoffs ------------------------------------------------------------------------------------------

    def accept_handoff(self, handoff: StreamingHandoff | WebSocketHandoff) -> None:
        """Thread-safe: the pool's loop starts serving the connection on its next iteration (it is woken)."""
        if type(handoff) is WebSocketHandoff:
            self.loop.call_soon_threadsafe(self._take_websocket, handoff)
        else:
            self.loop.call_soon_threadsafe(self._take, handoff)

    def accept_h2(self, handoff) -> None:
        """Thread-safe: an HTTP/2 connection (hybrid/h2/handoff.py) is served from the next loop iteration."""
        self.loop.call_soon_threadsafe(self._take_h2, handoff)

    def _take_h2(self, handoff) -> None:
        # (imported on the first HTTP/2 connection: h2 and hpack stay out of a process that never serves one)
        from hybrid.h2.session import H2Session

        self.handoffs += 1
        session = H2Session(self, handoff)
        self.h2_sessions.add(session)
        self.server.connections.add(session)
        if self.server.draining:
            session.shutdown()  # (GOAWAY at once: no stream taken)

    def _take_websocket(self, handoff: WebSocketHandoff) -> None:
        # (imported on the first WebSocket: wsproto and h11 are 5 MiB of a process that may never serve one)
        from hybrid.asgi.websocket import WebSocketSession

        self.handoffs += 1
        if self.server.lifecycle is not None:
            self.server.lifecycle_handed_off(handoff.sock.fileno(), handoff.scope, "websocket")
        session = WebSocketSession(self, handoff)
        connections = self.server.connections
        connections.discard(handoff.conn)
        connections.add(session)
        session.start()

    def _take(self, handoff: StreamingHandoff) -> None:
        self.handoffs += 1
        if self.server.lifecycle is not None:
            self.server.lifecycle_handed_off(handoff.sock.fileno(), handoff.scope, "stream")
        conn = PoolConnection(self, handoff)
        connections = conn.server.connections
        connections.discard(handoff.conn)
        connections.add(conn)
        # The request's body events, if the worker read any, are still at the head of the connection's events:
        # the pool starts the request exactly as a worker would have, with a scope of its own (the pool's state).
        conn._start(handoff.request)
        conn._settle()

    def start_app(self, scope: dict, receive, send, owner, on_done):
        """Run the app for one handed-off connection as a tracked task; ``owner`` (a RequestCycle or a
        WebSocketSession) names its route if a step blocks the loop. Returns the task."""
        app = self.app
        limit = self.server.concurrency
        if limit is not None:  # --limit-concurrency: past it, a built-in app answers 503
            app = limit.admit(app)
        try:
            # asyncio's C Task, stepping a compiled wrapper that times each step: the pool's streams step once
            # per event, and the workers' pure-Python RequestTask would cost a microsecond more each time.
            task = self.loop.create_task(TimedCoroutine(app(scope, receive, send), self.step_blocked,
                                                        BLOCKED_STEP, owner))
        except BaseException as exc:  # the app object could not even be called
            task = self.loop.create_future()
            task.set_exception(exc)
        self.tasks.add(task)
        if limit is not None and app is self.app:
            task.add_done_callback(limit.release)
        task.add_done_callback(on_done)
        return task

    def step_blocked(self, coro: TimedCoroutine, took: float, started: float) -> None:
        """A step of a stream held the pool's loop for ``took`` seconds: record where (docs/blocking.md), and
        report it if other streams waited."""
        sampler = self.server.sampler
        if sampler is not None:
            self.server.blocking_sites.record(coro.cycle, sampler.take(threading.get_ident(), began=started), took,
                                              "the async pool's loop")
        waiting = len(self.tasks) + len(self.h2_remote) - 1
        if waiting > 0:
            self.server.blocked_loop(coro.cycle, took, waiting, "the async pool")

    def close_later(self, stream: SocketStream, notify: bool = True) -> None:
        """Flush what the stream still buffers (bounded), then close its socket; shutdown waits for these.
        ``notify``: end a TLS session with close_notify once all is flushed."""
        task = self.loop.create_task(stream.close(timeout=5.0, notify=notify))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)
