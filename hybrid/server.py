"""One server process: connection sets, SyncWorker threads, the monitor, signals, shutdown (its listening sockets:
hybrid/listeners.py).

The main thread does no serving: it binds, starts the threads, then waits for a signal. Shutdown order (see
docs/architecture.md): stop accepting, close idle connections, let in-flight requests finish (bounded by
--timeout-graceful-shutdown), run lifespan shutdown in every loop, exit 0 (4 when a bound cut something short:
hybrid/shutdown.py).
"""

from __future__ import annotations

import gc
import logging
import os
import random
import resource
import signal
import socket
import sys
import threading
import time
from time import monotonic_ns, perf_counter

from hybrid import lifecycle
from hybrid._speedups.h1 import _create_h1_protocol
from hybrid._speedups.steps import watch_steps
from hybrid.asgi.lifespan import LifespanFailure, LifespanOrder
from hybrid.asgi.task import BLOCKED_STEP
from hybrid.async_mode import AsyncAcceptor
from hybrid.async_pool import AsyncPool, StreamRouter
from hybrid.banner import debug_line, plural, startup_banner
from hybrid.blocking_sites import BlockingSites
from hybrid.config import ConfigError, ServerConfig
from hybrid.connection import Connection, ConnectionSet
from hybrid.door import close_the_door
from hybrid.gc_policy import apply_gc_threshold
from hybrid.importer import load_app
from hybrid.limits import ConcurrencyLimit, ConnectionLimit
from hybrid.listeners import bind_listeners, close_listeners, describe_listeners, start_listening
from hybrid.logs import access_logger, flush_access_log, log_http_access, logger
from hybrid.main_wait import MainWait
from hybrid.monitor import ThreadManager
from hybrid.proxy_headers import ProxyTrust
from hybrid.request_id import REQUEST_ID_KEY, RequestIds, request_id_of
from hybrid.shutdown import EXIT_STARTUP_FAILED, STREAMS_DEFAULT, ShutdownClock, StartupAborted, StartupError
from hybrid.stream_end import CANCEL_WAIT, end_worker_streams, worker_streams
from hybrid.tls import TLSConnection, create_ssl_context, tls_io_path
from hybrid.uvicorn_compat import header_block, parse_header


def raise_fd_limit() -> None:
    # Every idle keep-alive connection is one descriptor; the default soft limit (1024) is far too low.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


# During a graceful shutdown, a keep-alive connection idle this long is closed; one that is busy, or gets a request
# sooner, is answered first (with connection: close). Closing at once would race a request already on its way.
DRAIN_IDLE_GRACE = 0.25
# How often the thread gauges of --metrics-port are refreshed (by the main thread's loop).
METRICS_SAMPLE_INTERVAL = 0.5


class _ServerAnswer:
    """What the access log and ResponseCompleted read of a request (a RequestCycle's scope, status, sent and
    started), for an error answered before the request's head was whole."""

    __slots__ = ("scope", "status", "sent", "started")

    def __init__(self, conn, ids: RequestIds) -> None:
        self.scope = {"method": "-", "path": "-", "raw_path": b"-", "query_string": b"", "http_version": "1.1",
                      "client": conn.client_addr, "extensions": {REQUEST_ID_KEY: {"id": ids.for_headers(())}}}
        self.status = 0
        self.sent = 0
        self.started = perf_counter()


class Server:
    """One process. ``sockets`` are listeners bound by a supervisor; ``control`` is its pipe to this worker."""

    def __init__(self, config: ServerConfig, app=None, sockets=None, control=None, lifecycle_collector=None) -> None:
        self.config = config
        # A LifecycleCollector (hybrid/lifecycle.py), or None: then no event is ever built.
        self.lifecycle = lifecycle_collector
        self.metrics = None
        self.metrics_server = None
        if config.metrics_port is not None:
            self.metrics = lifecycle.MetricsCollector()
            self.lifecycle = self.metrics if self.lifecycle is None else lifecycle.FanOut(self.lifecycle,
                                                                                          self.metrics)
        self.given_sockets = sockets
        self.control = control
        self.requests = 0
        self.max_requests = 0
        if config.limit_max_requests is not None and control is not None:
            # Jitter, so workers started together do not all recycle at once.
            jitter = config.limit_max_requests_jitter  # (uvicorn's --limit-max-requests-jitter; else a tenth)
            jitter = max(1, config.limit_max_requests // 10) if jitter is None else jitter
            self.max_requests = config.limit_max_requests + random.randint(0, jitter)
        self.app_ref = app if app is not None else config.app  # (as given: the banner names it)
        gc_before = gc.get_threshold()
        self.app = load_app(app if app is not None else config.app, factory=config.factory and app is None,
                            app_dir=config.app_dir, interface=config.interface)
        apply_gc_threshold(config.gc_threshold, gc_before)  # (an app's own gc.set_threshold wins)
        # --header: written once per response head; a 'server' or 'date' among them replaces hybrid's own.
        self.extra_headers = header_block(config.headers)
        self.extra_header_pairs = [parse_header(h) for h in config.headers]  # (WebSocket handshake responses)
        header_names = {h.partition(":")[0].strip().lower() for h in config.headers}
        self.server_header = config.server_header and "server" not in header_names
        self.date_header = config.date_header and "date" not in header_names
        self.root_path = config.root_path
        # Each process builds its own context (a supervisor checked the options once before starting workers).
        try:
            self.ssl_context = create_ssl_context(config)
        except ConfigError as exc:
            raise StartupError(str(exc)) from None
        # Chosen once: with TLS off, connections are plain Connections and requests never meet a TLS branch.
        self.connection_class = Connection if self.ssl_context is None else TLSConnection
        if self.ssl_context is not None:
            # (The slower path is said at info level unless the operator chose it: no silent fallback.)
            path = tls_io_path()
            quiet = path.startswith("compiled") or "HYBRID_TLS_DIRECT=0" in path
            logger.log(logging.DEBUG if quiet else logging.INFO, "TLS reads and writes: %s", path)
        self.h2c = config.http2 and self.ssl_context is None  # h2c prior knowledge on the plain port (hybrid/h2)
        # Checked per request before anything of the access line is built.
        self.access_log = config.access_log and access_logger.isEnabledFor(logging.INFO)
        self.request_ids = RequestIds(config.request_id_header)
        self.draining = False
        self.connections: set = set()
        self.sets: dict[int, ConnectionSet] = {}
        self.listeners: list[socket.socket] = []
        self.router = StreamRouter(config.async_paths)
        self.proxy_trust = ProxyTrust(
            config.forwarded_allow_ips, forwarded=config.proxy_forwarded, forwarded_host=config.proxy_forwarded_host,
        ) if config.proxy_headers else None
        self.concurrency = ConcurrencyLimit(config.limit_concurrency) if config.limit_concurrency else None
        self.connection_limit = ConnectionLimit(config.limit_connections, self) if config.limit_connections else None
        self.lifespan_order = LifespanOrder()  # every loop's lifespan: they end in reverse order
        self.pool = AsyncPool(config, self.app, server=self)
        self.acceptor = AsyncAcceptor(self, self.pool, []) if config.mode == "async" else None
        self.threads = ThreadManager(self, config)
        self.monitor = self.threads.monitor
        # Where handlers block (docs/blocking.md): the monitor flags blocked steps, the sampler reads their stacks.
        self.blocking_sites = BlockingSites(self.metrics)
        self.sampler = None
        if config.blocking_stacks:
            from hybrid.stack_sampler import StackSampler

            self.sampler = StackSampler(self.monitor, BLOCKED_STEP)
        self._dump_requested = False
        # Set by signal handlers, which must not take locks (threading.Event.set does: a handler that interrupts
        # the main thread inside Event.wait deadlocks on the Event's own lock). The main thread, woken by the
        # signal (MainWait), reads it.
        self._stop_requested = False
        self._main_wait: MainWait | None = None  # (serve_forever's: signals and request_stop wake it)
        # A supervisor's shutdown names one worker the last to hold the shared socket: it drains the queue.
        self.last_door = False
        self._signals = 0
        self.blocked_steps = 0
        self.started_at = time.monotonic()
        self._blocked_routes: set[str] = set()

    def forget(self, conn) -> None:
        """A connection closed for good (from any thread)."""
        self.connections.discard(conn)
        if self.connection_limit is not None:
            self.connection_limit.closed_one()

    def new_protocol(self):
        return _create_h1_protocol(server_header=self.server_header, date_header=self.date_header,
                                   extra_headers=self.extra_headers,
                                   max_body_size=self.config.limit_request_body, websocket=self.config.ws != "none",
                                   max_incomplete_event_size=self.config.max_incomplete_event_size)

    @staticmethod
    def where(conn) -> str:
        """Where a request runs: a worker thread, or the async pool (handed off before any app code ran)."""
        return "worker" if type(conn) is Connection else "pool"

    def server_answered(self, conn, status: int, sent: int, cycle=None) -> None:
        """A response the server made, not the app: an error for a malformed, oversized or timed-out request, or a
        500 for an app that failed before anything reached the client. It is in the access log and the metrics
        as any response is, with its own status and body size. ``cycle``: the request, when its head was whole;
        without it the line has "-" for the method and path (and the version of the response, 1.1)."""
        if not self.access_log and self.lifecycle is None:
            return
        if cycle is None:
            cycle = _ServerAnswer(conn, self.request_ids)
        cycle.status = status
        cycle.sent = sent
        if self.access_log:
            log_http_access(conn, cycle, self.where(conn))
        if self.lifecycle is not None:
            self.lifecycle_completed(conn, cycle)

    # -- lifecycle events (only called while a collector is attached: ``self.lifecycle is not None``) ----------

    def lifecycle_opened(self, conn) -> None:
        self.lifecycle.event(lifecycle.ConnectionOpened(monotonic_ns(), conn.fd, conn.client_addr, conn.server_addr))

    def lifecycle_closed(self, fd: int) -> None:
        self.lifecycle.event(lifecycle.ConnectionClosed(monotonic_ns(), fd))

    def lifecycle_started(self, conn, cycle) -> None:
        if self.lifecycle is self.metrics:  # the built-in collector alone: it needs no event object, no request id
            self.metrics.request_started(conn.fd, self.where(conn))
            return
        scope = cycle.scope
        self.lifecycle.event(lifecycle.RequestStarted(monotonic_ns(), conn.fd, request_id_of(scope), scope["method"],
                                                      scope["path"], self.where(conn)))

    def lifecycle_completed(self, conn, cycle) -> None:
        if self.lifecycle is self.metrics:
            self.metrics.response_completed(conn.fd, cycle.status, cycle.sent, perf_counter() - cycle.started,
                                            self.where(conn))
            return
        self.lifecycle.event(lifecycle.ResponseCompleted(
            monotonic_ns(), conn.fd, request_id_of(cycle.scope), cycle.status, cycle.sent,
            int((perf_counter() - cycle.started) * 1e9), self.where(conn)))

    def lifecycle_disconnected(self, conn) -> None:
        self.lifecycle.event(lifecycle.ClientDisconnected(monotonic_ns(), conn.fd))

    def lifecycle_handed_off(self, fd: int, scope: dict, kind: str) -> None:
        self.lifecycle.event(lifecycle.HandedOff(monotonic_ns(), fd, request_id_of(scope), kind))

    def lifecycle_ws_opened(self, fd: int, stream_id: int, scope: dict) -> None:
        self.lifecycle.event(lifecycle.WebSocketOpened(monotonic_ns(), fd, stream_id, request_id_of(scope)))

    def lifecycle_ws_closed(self, fd: int, stream_id: int) -> None:
        self.lifecycle.event(lifecycle.WebSocketClosed(monotonic_ns(), fd, stream_id))

    def lifecycle_taken_over(self, thread: str, set_fd: int) -> None:
        self.lifecycle.event(lifecycle.TakenOver(monotonic_ns(), thread, set_fd))

    def blocked_loop(self, cycle, took: float, waiting: int, where: str) -> None:
        """One warning per route whose step blocked an event loop that held other requests; all are counted."""
        self.blocked_steps += 1
        if self.metrics is not None:
            self.metrics.blocked_loop()
        route = (f"{cycle.scope.get('method', 'WebSocket')} {cycle.scope['path']}" if cycle is not None
                 else "(unknown route)")
        if route in self._blocked_routes:
            return
        self._blocked_routes.add(route)
        logger.warning(
            "%s blocked the event loop of %s for %.0f ms while %d other request(s) waited on that loop. "
            "Move blocking calls out of async code (a plain 'def' endpoint, or 'await asyncio.to_thread(...)'). "
            "Said once per route.", route, where, took * 1000, waiting)

    def watch_loop(self) -> int:
        """On the async pool's thread: have its steps watched (a blocking one is captured). Returns the slot."""
        if self.sampler is None:
            return -1
        slot = self.monitor.add_watch()
        if slot >= 0:
            watch_steps(self.monitor.step_clock(slot))
        return slot

    def unwatch_loop(self, slot: int) -> None:
        if slot >= 0:
            watch_steps(0)
            self.monitor.remove_slot(slot)

    def dump_blocking_sites(self, level: int = logging.WARNING) -> None:
        """The top (route, location) pairs where handlers blocked (SIGUSR1, and the shutdown summary)."""
        who = "" if self.control is None else f" in worker [{os.getpid()}]"
        for line in self.blocking_sites.dump(self.sampler, who):
            logger.log(level, "%s", line)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def startup(self) -> None:
        self._install_signal_handlers()  # before anything is announced: a SIGTERM must never kill us mid-start
        raise_fd_limit()
        self.listeners = self.given_sockets if self.given_sockets is not None else bind_listeners(self.config)
        if self.metrics is not None and self.control is None:  # (a supervisor serves its workers' metrics)
            try:
                self.metrics_server = self.metrics.start(self.config.host, self.config.metrics_port)
            except OSError as exc:
                self._close_listeners()
                raise StartupError(f"Cannot serve metrics on {self.config.host}:{self.config.metrics_port}: "
                                   f"{exc.strerror}") from None
            logger.info("Metrics (Prometheus text) on http://%s:%d/metrics", self.config.host,
                        self.metrics_server[0].server_port)
        deadline = time.monotonic() + self.config.timeout_startup
        if self.sampler is not None:
            self.sampler.start()  # (before the monitor: it flags steps from its first tick)
        try:
            if self.acceptor is None:
                # One spare beyond --threads, ready for the first takeover.
                spare = 1 if self.config.max_threads > self.config.threads else 0
                self.threads.start(self.config.threads + spare, deadline, self._stop_signalled)
            self.pool.start(deadline, self._stop_signalled)
            start_listening(self.config, self.listeners)
        except BaseException as exc:
            self._close_listeners()
            self._stop_started_loops()
            if isinstance(exc, LifespanFailure):
                raise StartupError(f"Application startup failed ({exc.where}): {exc}") from None
            raise
        if self.acceptor is not None:  # --mode async: the pool's loop accepts and serves everything
            if self.sampler is not None:
                self.threads.start_monitor()  # (no serving threads: it watches the pool's loop alone)
            self.acceptor.listeners = list(self.listeners)
            self.acceptor.start()
        else:
            sets = [ConnectionSet(self.listeners) for _ in range(self.config.threads)]
            self.sets = {s.fd: s for s in sets}
            self.threads.give_sets(sets)
        if self.control is not None:
            logger.info("Started worker process [%d]", os.getpid())
            self.control.send(("ready", os.getpid()))
        else:
            logger.info("%s", startup_banner(self.config, describe_listeners(self.config, self.listeners),
                                             self.app_ref))

    def serve_forever(self) -> int:
        recycling = False
        sampled = 0.0
        self._main_wait = waiter = MainWait()
        fds = (self.control,) if self.control is not None else ()
        if not waiter.signals_wake or self.max_requests:
            timeout = 0.05  # (polled: a flag set by a thread we cannot hear, or the request count to recycle at)
        else:
            timeout = METRICS_SAMPLE_INTERVAL if self.metrics is not None else 1.0
        try:
            while not self._stop_requested:
                waiter.wait(timeout, fds)
                if self._dump_requested:  # SIGUSR1
                    self._dump_requested = False
                    self.dump_blocking_sites()
                if self.metrics is not None and time.monotonic() - sampled >= METRICS_SAMPLE_INTERVAL:
                    sampled = time.monotonic()
                    self._sample_threads()
                if self.control is None:
                    continue
                while self.control.poll():
                    try:
                        message = self.control.recv()
                    except EOFError:  # the supervisor is gone: nobody will ever stop us otherwise
                        logger.error("Supervisor went away; shutting down.")
                        self._stop_requested = True
                        break
                    if message == "ping" and self.healthy():
                        self.control.send("pong")
                    elif message == "stop-last":  # (the supervisor's shutdown: see hybrid/door.py)
                        self.last_door = True
                        self._stop_requested = True
                if self.max_requests and not recycling and self.requests >= self.max_requests:
                    recycling = True
                    logger.info("Worker [%d] served %d requests: asking to be recycled.", os.getpid(), self.requests)
                    self.control.send(("recycle", os.getpid()))
        finally:  # (a wake-up fd left set would have signals written to a closed, maybe reused, fd)
            waiter.close()
        return self.shutdown()

    def _sample_threads(self) -> None:
        """--metrics-port: how many serving threads own a set, are blocked in a handler, or wait as spares."""
        monitor = self.monitor
        total, spare = monitor.thread_count(), monitor.spare_count()
        serving = sum(1 for worker in list(self.threads.workers)
                      if worker.slot >= 0 and monitor.owned_set(worker.slot) >= 0)
        self.metrics.sample_threads(serving, max(0, total - spare - serving), spare)

    def healthy(self) -> bool:
        """True when every thread that owns a connection set answers within --timeout-worker-healthcheck."""
        answers = []
        for worker in list(self.threads.workers):
            loop = worker.loop
            if self.monitor.owned_set(worker.slot) < 0 or loop is None or not loop.is_running():
                # Spares, and threads whose set the monitor handed on while they block in a handler,
                # serve no one else: their silence is expected.
                continue
            answered = threading.Event()
            try:
                loop.call_soon_threadsafe(answered.set)
            except RuntimeError:
                continue
            answers.append(answered)
        deadline = time.monotonic() + self.config.timeout_worker_healthcheck
        return all(a.wait(max(0.0, deadline - time.monotonic())) for a in answers)

    def _stop_signalled(self) -> bool:
        return self._stop_requested

    def _stop_started_loops(self) -> None:
        """Startup failed or was stopped: the loops whose lifespan did start shut it down (briefly: bounded)."""
        clock = ShutdownClock(None)
        if self.pool.ready.is_set() and self.pool.startup_error is None:
            self.pool.shutdown_clock = clock
            self.pool.stop(0.0, join=False)
        lifespan_deadline = clock.lifespan_deadline()
        self.threads.stop(lifespan_deadline, clock.join_deadline(lifespan_deadline))
        self.pool.join(clock.join_deadline(lifespan_deadline))

    def request_stop(self) -> None:
        self._stop_requested = True
        if self._main_wait is not None:
            self._main_wait.wake()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum, frame):
            self._signals += 1
            if self._signals > 1 and signum == signal.SIGINT:
                logger.warning("Second interrupt: exiting now.")
                flush_access_log(timeout=1.0)  # (bounded: this handler may have interrupted a thread writing them)
                os._exit(1)
            self._stop_requested = True

        def hangup(signum, frame):
            logger.warning("SIGHUP ignored: replacing the server without dropping connections needs worker "
                           "processes (--workers N, --reload or --limit-max-requests).")

        def dump(signum, frame):
            self._dump_requested = True  # (the main loop logs it: a handler must not take the logging lock)

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGUSR1, dump)
        if self.control is None:  # a supervisor's worker leaves SIGHUP to the supervisor
            signal.signal(signal.SIGHUP, hangup)

    def shutdown(self) -> int:
        """The graceful shutdown; returns the exit code (EXIT_CUT_SHORT when a bound abandoned anything)."""
        logger.info("Shutting down" if self.control is None else f"Shutting down worker process [{os.getpid()}]")
        self.clock = ShutdownClock(self.config.timeout_graceful_shutdown)
        self.draining = True
        close_the_door(self)
        self._close_listeners()
        logger.info("Stopped accepting connections")
        if self.control is not None:
            try:
                self.control.send(("door-closed", os.getpid()))  # (the supervisor waits for it: see its shutdown)
            except OSError:
                pass
        for worker in list(self.threads.workers):
            if worker.loop is not None and worker.loop.is_running():
                worker.loop.call_soon_threadsafe(worker.drain, DRAIN_IDLE_GRACE)
        if self.acceptor is not None:
            self.pool.loop.call_soon_threadsafe(self.acceptor.drain, DRAIN_IDLE_GRACE)
        # In-flight requests finish; their connections close after the response (draining).
        # A response still streaming from a worker is a stream: it ends at the streams' bound (stream_end.py).
        clock = self.clock
        streams_bound = clock.started + STREAMS_DEFAULT if clock.deadline is None else clock.deadline
        streams_ended = None
        while self._worker_connections():
            now = time.monotonic()
            if streams_ended is None and now >= streams_bound and worker_streams(self.connections):
                streams_ended = now + CANCEL_WAIT if end_worker_streams(self.connections) else now
            if clock.deadline is not None and now >= max(clock.deadline, streams_ended or 0.0):
                break
            time.sleep(0.01)
        if self._worker_connections():
            clock.cut_short(f"{len(self.connections)} request(s) still in flight at --timeout-graceful-shutdown")
        # Streams in the async pool get what is left of the graceful timeout (or STREAMS_DEFAULT), then close.
        lifespans = [w.lifespan for w in list(self.threads.workers)] + [self.pool.lifespan]
        self.pool.shutdown_clock = clock
        self.pool.stop(clock.streams_left(), join=False)
        if self.connections:
            logger.warning("Graceful shutdown timed out with %d connections open; closing them.",
                           len(self.connections))
        # Every loop's lifespan shutdown, the last started first (the pool's waits for spares started after it),
        # all bounded: a thread stuck in app code is abandoned.
        lifespan_deadline = clock.lifespan_deadline()
        stuck = self.threads.stop(lifespan_deadline, clock.join_deadline(lifespan_deadline))
        self.pool.join(clock.join_deadline(lifespan_deadline))
        if stuck:
            clock.cut_short(f"{plural(len(stuck), 'thread')} still in app code, abandoned")
        if any(lifespan.timed_out for lifespan in lifespans):
            clock.cut_short("lifespan shutdown did not complete")
        for conn in list(self.connections):
            # Their threads are stopped: nobody else owns these sockets any more.
            if conn.sock is not None:
                conn.sock.close()
        self.connections.clear()
        uptime = max(1e-3, time.monotonic() - self.started_at)
        logger.info("Served %s; %s of blocked threads (%s at most); the monitor woke %.0f times a second; %s to "
                    "the async pool; %s", plural(self.requests, "request"),
                    plural(self.monitor.takeovers, "takeover"), plural(self.threads.peak, "thread"),
                    self.monitor.wakeups / uptime, plural(self.pool.handoffs, "handoff"),
                    plural(self.blocked_steps, "blocked-loop step"))
        if self.blocking_sites.sites:
            self.dump_blocking_sites(logging.INFO)
        if self.sampler is not None:
            self.sampler.stop()
        for conn_set in self.sets.values():
            conn_set.close()
        if self.metrics_server is not None:
            self.metrics_server[0].shutdown()
            self.metrics_server[0].server_close()
        logger.info("Finished server process [%d]", os.getpid())
        flush_access_log()  # (the buffered access lines: a worker process leaves by os._exit, without atexit)
        return self.clock.exit_code

    def _worker_connections(self) -> bool:
        # (and requests still running after their response: BackgroundTasks)
        return any(not getattr(conn, "in_pool", False) for conn in list(self.connections)) or any(
            worker.pending for worker in list(self.threads.workers))

    def _close_listeners(self) -> None:
        close_listeners(self.config, self.listeners, owner=self.given_sockets is None)
        self.listeners = []


def serve(config: ServerConfig, app=None, lifecycle_collector=None) -> int:
    """Run one server process until it is stopped; return the process exit code."""
    from hybrid.importer import AppLoadError
    from hybrid.logs import LogConfigError, setup_logging_for

    if config.env_file is not None:
        from hybrid.uvicorn_compat import load_env_file

        load_env_file(config.env_file)  # (before the app is imported, here or in the workers spawned below)
    try:
        setup_logging_for(config)
    except LogConfigError as exc:
        print(f"hybrid: error: Invalid value for '--log-config': {exc}", file=sys.stderr)
        return 2
    from hybrid.uvicorn_compat import notes

    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s", debug_line(config))
    for level, line in notes(config):
        getattr(logger, level)("%s", line)
    try:
        create_ssl_context(config)  # bad --ssl-* options: one line naming the option, before anything starts
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_STARTUP_FAILED
    if config.use_supervisor:
        from hybrid.supervisor import Supervisor

        return Supervisor(config).run()
    try:
        server = Server(config, app, lifecycle_collector=lifecycle_collector)
        server.startup()
    except AppLoadError as exc:
        logger.error("Error loading ASGI app. %s", exc)
        return 1
    except StartupError as exc:
        logger.error("%s", exc)
        return EXIT_STARTUP_FAILED
    except StartupAborted as exc:
        logger.error("%s", exc)
        return exc.code
    return server.serve_forever()
