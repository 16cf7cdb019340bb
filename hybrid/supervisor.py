"""The supervisor: binds the listening socket once, runs worker processes, replaces them, handles signals.

Used with ``--workers N`` (N > 1), ``--reload`` and ``--limit-max-requests``. Every worker process inherits the same
listening socket and accepts from it (the kernel spreads connections across the processes waiting on it); we
prefer one shared socket to SO_REUSEPORT because a socket that stays open in the supervisor never refuses a
connection while workers are swapped (SIGHUP, reload, recycling), and connections already queued on it are
accepted by whichever worker is alive, instead of being reset with a closing worker's own socket.

Each worker talks to the supervisor over a pipe: it says ``ready`` after its lifespan startup, answers ``ping``
with ``pong`` when all its serving threads answer (the health check), and asks to be ``recycle``d after about
``--limit-max-requests`` requests.

Signals: SIGINT/SIGTERM stop everything gracefully (each worker drains, runs lifespan shutdown, exits 0); a second
SIGINT kills the workers at once. SIGHUP starts a new generation of workers and, once it is ready, stops the old
one gracefully: the socket never closes, so no client sees a refused or reset connection.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from hybrid.banner import plural, startup_banner
from hybrid.config import ServerConfig
from hybrid.listeners import bind_listeners, close_listeners, describe_listeners
from hybrid.restart_backoff import RestartBackoff
from hybrid.shutdown import EXIT_CUT_SHORT, EXIT_STARTUP_FAILED, StartupError

logger = logging.getLogger("hybrid.error")

HEALTHCHECK_INTERVAL = 1.0
# Shutdown: how long the workers get to leave the shared socket before the last one drains its queue.
DOOR_WAIT = 2.0
# Extra time a worker gets beyond --timeout-graceful-shutdown before the supervisor kills it.
KILL_MARGIN = 5.0
DEFAULT_RELOAD_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*", "__pycache__")


def _worker_main(config: ServerConfig, sockets, control) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter that imports the app itself)."""
    from hybrid.importer import AppLoadError
    from hybrid.logs import flush_access_log, setup_logging_for
    from hybrid.server import Server
    from hybrid.shutdown import StartupAborted

    setup_logging_for(config)  # (checked by the supervisor before it started us)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # SIGHUP is the supervisor's business
    for sock in sockets:
        sock.setblocking(False)
    try:
        server = Server(config, sockets=sockets, control=control)
        server.startup()
    except AppLoadError as exc:
        logger.error("Error loading ASGI app. %s", exc)
        os._exit(1)
    except StartupError as exc:
        logger.error("%s", exc)
        os._exit(EXIT_STARTUP_FAILED)
    except StartupAborted as exc:
        logger.error("%s", exc)
        os._exit(exc.code)
    except BaseException:
        logger.exception("Worker failed to start")
        os._exit(1)
    code = 1
    try:
        code = server.serve_forever()
    finally:  # (os._exit skips atexit, and with it logging.shutdown: the buffered access lines go out here)
        flush_access_log()
    os._exit(code)


@dataclass(eq=False)
class Worker:
    process: multiprocessing.Process
    control: object  # the supervisor's end of the pipe
    generation: int
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    ready_at: float | None = None
    stopping_since: float | None = None
    last_pong: float = field(default_factory=time.monotonic)
    ping_sent: float | None = None
    door_closed: bool = False  # (shutdown) it no longer holds the listening socket
    replacement: Worker | None = None  # (recycling) started to take its place; it stops once that one is ready


@dataclass(eq=False)
class Generation:
    """Workers being started together (the first start, SIGHUP, a reload): the supervisor keeps running its loop
    (health checks, restarts) while they start, and acts once all are ready or one has failed."""
    number: int
    why: str
    workers: list[Worker]


class Supervisor:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.ctx = multiprocessing.get_context("spawn")
        self.sockets = []
        self.workers: list[Worker] = []
        self.generation = 0  # the serving generation (0 until the first one is ready)
        self.starting: Generation | None = None
        self.backoff = RestartBackoff()
        self.next_restart = 0.0
        self.exit_code = 0
        self.failed_to_start = False
        self.replacing: list[tuple[list[Worker], str]] = []  # old workers stopping, and why (SIGHUP, reload)
        self.waiting_for_fix: int | None = None  # --reload: the first start failed with this code; a change retries
        # Flags set by signal handlers: handlers must not take locks (a threading.Event would deadlock when the
        # signal lands while the main thread holds the Event's lock); the main loop polls them.
        self._stop_requested = False
        self._interrupts = 0
        self._hangup = False
        self._reload_changes: list[str] = []
        self._reload_lock = threading.Lock()
        self._watch_stop = threading.Event()
        self.metrics = None  # hybrid.metrics.MultiprocessMetrics with --metrics-port

    # -- workers ------------------------------------------------------------------------------------------

    def _spawn(self, generation: int) -> Worker:
        parent_end, child_end = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_worker_main, args=(self.config, self.sockets, child_end), name="hybrid-worker", daemon=False
        )
        process.start()
        child_end.close()
        worker = Worker(process, parent_end, generation)
        self.workers.append(worker)
        return worker

    def _start_generation(self, why: str) -> None:
        """Start --workers processes; ``_check_generation`` (each tick) acts when they are ready or one fails."""
        number = max(self.generation, self.starting.number if self.starting else 0) + 1
        self.starting = Generation(number, why, [self._spawn(number) for _ in range(self.config.workers)])

    def _check_generation(self) -> None:
        gen = self.starting
        for worker in gen.workers:
            self._read_messages(worker)
        if all(w.ready for w in gen.workers):
            self.starting = None
            old = [w for w in self.workers if w.generation != gen.number and w.stopping_since is None]
            self.generation = gen.number
            if gen.why == "start":
                self.waiting_for_fix = None
                logger.info("%s", startup_banner(self.config, describe_listeners(self.config, self.sockets)))
                return
            for worker in old:
                self._terminate(worker, graceful=True)  # (each drains its requests first)
            logger.info("New workers ready (%s); stopping %s gracefully.", gen.why, plural(len(old), "old worker"))
            self.replacing.append((old, gen.why))  # ("Replaced" is said once they have finished: _tick)
            return
        failed = [w for w in gen.workers if not w.ready and w.process.exitcode is not None]
        if not failed:
            return
        self.starting = None
        code = failed[0].process.exitcode
        what = f"worker [{failed[0].process.pid}] {_describe_exit(code)}"
        # The others of the generation stop gracefully: one already serving finishes its requests first.
        for worker in gen.workers:
            self._terminate(worker, graceful=True)
        if gen.why == "start" and self.config.reload:
            # As uvicorn does: keep watching, and start again once a file changes (the fix).
            logger.error("Workers failed to start (%s); waiting for a file change to try again (--reload).", what)
            self.waiting_for_fix = code if code and code > 0 else EXIT_STARTUP_FAILED
        elif gen.why == "start":
            logger.error("Workers failed to start (%s); exiting.", what)
            self.exit_code = code if code and code > 0 else EXIT_STARTUP_FAILED
            self.failed_to_start = True
        else:
            # Keep serving with the running workers rather than go down (e.g. a syntax error while reloading).
            logger.error("New workers failed to start (%s: %s); keeping the running ones.", gen.why, what)

    def _read_messages(self, worker: Worker) -> None:
        try:
            while worker.control.poll():
                message = worker.control.recv()
                if isinstance(message, tuple) and message[0] == "ready":
                    worker.ready = True
                    worker.ready_at = worker.last_pong = time.monotonic()
                elif message == "pong":
                    worker.last_pong = time.monotonic()
                    worker.ping_sent = None
                elif isinstance(message, tuple) and message[0] == "door-closed":
                    worker.door_closed = True
                elif (isinstance(message, tuple) and message[0] == "recycle" and worker.stopping_since is None
                      and worker.replacement is None):
                    logger.info("Recycling worker [%d] after its request limit.", worker.process.pid)
                    worker.replacement = self._spawn(worker.generation)
        except (EOFError, OSError):
            pass

    def _check_recycling(self, worker: Worker) -> None:
        """Recycling: a replacement first, then the old worker drains; capacity never drops to zero."""
        replacement = worker.replacement
        if replacement.ready or replacement.process.exitcode is not None:
            worker.replacement = None
            self._terminate(worker, graceful=True)  # (a replacement that died is replaced like any other)

    def _terminate(self, worker: Worker, graceful: bool) -> None:
        if worker.process.pid is None or worker.process.exitcode is not None:
            return
        if worker.stopping_since is None:
            worker.stopping_since = time.monotonic()
        try:
            os.kill(worker.process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self, worker: Worker, timeout: float | None = None) -> None:
        worker.process.join(timeout)
        if worker.process.exitcode is not None:
            try:
                worker.control.close()
            except OSError:
                pass
            if worker in self.workers:
                self.workers.remove(worker)
                if self.metrics is not None:
                    self.metrics.worker_exited(worker.process.pid)

    def _kill_deadline(self) -> float | None:
        if self.config.timeout_graceful_shutdown is None:
            return None
        return self.config.timeout_graceful_shutdown + KILL_MARGIN

    # -- the supervisor loop --------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self._run()
        finally:
            if self.metrics is not None:
                self.metrics.close()

    def _start_metrics(self) -> bool:
        """--metrics-port: the run's multiprocess directory (before any worker starts) and the one endpoint."""
        from hybrid.metrics import MultiprocessMetrics

        self.metrics = MultiprocessMetrics()
        try:
            port = self.metrics.serve(self.config.host, self.config.metrics_port)
        except OSError as exc:
            logger.error("Cannot serve metrics on %s:%d: %s", self.config.host, self.config.metrics_port,
                         exc.strerror)
            return False
        logger.info("Metrics (Prometheus text) on http://%s:%d/metrics, for all workers", self.config.host, port)
        return True

    def _run(self) -> int:
        if self.config.reload:
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                logger.error("--reload needs the watchfiles package: pip install 'hybrid-asgi[reload]'")
                return 1
        try:
            self.sockets = bind_listeners(self.config)  # (the first worker to be ready starts listening)
        except StartupError as exc:
            logger.error("%s", exc)
            return EXIT_STARTUP_FAILED
        self._install_signal_handlers()
        logger.info("Started supervisor process [%d]", os.getpid())
        if self.config.metrics_port is not None and not self._start_metrics():
            self._close_sockets()
            return EXIT_STARTUP_FAILED
        self._start_generation("start")
        if self.config.reload:
            self._start_watcher()
        while not self._stop_requested and not self.failed_to_start:
            self._tick()
            time.sleep(0.05)
        if self.generation == 0 and self.waiting_for_fix is not None and self.starting is None:
            self.exit_code = self.waiting_for_fix  # (stopped while waiting for a fix: the start had failed)
        elif self.generation == 0 and not self.failed_to_start:
            logger.error("Stopped by a signal while the workers were starting.")
            self.exit_code = EXIT_CUT_SHORT
        self._shutdown()
        return self.exit_code

    def _tick(self) -> None:
        now = time.monotonic()
        if self.starting is not None:
            self._check_generation()
        if self._hangup and self.starting is None and self.generation:
            self._hangup = False
            self._start_generation("SIGHUP")
        with self._reload_lock:
            waiting = self.waiting_for_fix is not None
            changes = self._reload_changes if self.starting is None and (self.generation or waiting) else []
            if changes:
                self._reload_changes = []
        if changes:
            logger.warning("Detected changes in %s. Reloading...", ", ".join(sorted(set(changes))[:5]))
            self._start_generation("start" if waiting else "reload")
        for worker in list(self.workers):
            self._read_messages(worker)
            if worker.replacement is not None:
                self._check_recycling(worker)
            if worker.process.exitcode is not None:
                self._reap(worker)
                if worker.stopping_since is None:
                    self._died(worker, now)
                continue
            if worker.stopping_since is not None:
                limit = self._kill_deadline()
                if limit is not None and now - worker.stopping_since > limit:
                    logger.warning("Worker [%d] did not stop in time; killing it.", worker.process.pid)
                    self._terminate(worker, graceful=False)
                continue
            if worker.ready:
                if worker.ping_sent is None and now - worker.last_pong > HEALTHCHECK_INTERVAL:
                    try:
                        worker.control.send("ping")
                        worker.ping_sent = now
                    except OSError:
                        pass
                elif worker.ping_sent is not None and now - worker.ping_sent > self.config.timeout_worker_healthcheck:
                    logger.error("Worker [%d] failed its health check (no answer in %.1fs); replacing it.",
                                 worker.process.pid, self.config.timeout_worker_healthcheck)
                    self._terminate(worker, graceful=False)
        for old, why in list(self.replacing):
            if all(w.process.exitcode is not None for w in old):
                self.replacing.remove((old, why))
                logger.info("Replaced %s (%s).", plural(len(old), "worker"), why)
        if not self.generation:
            return  # (the first generation is still starting: it has no replacements yet)
        # Keep the serving generation at full strength, with backoff when workers keep dying.
        alive = [w for w in self.workers if w.generation == self.generation and w.stopping_since is None]
        missing = self.config.workers - len(alive)
        if missing > 0 and now >= self.next_restart:
            self.backoff.restarted(now)
            for _ in range(missing):
                worker = self._spawn(self.generation)
                logger.info("Started replacement worker [%d].", worker.process.pid)

    def _died(self, worker: Worker, now: float) -> None:
        """A worker nobody asked to stop has exited: replace it, after a delay that grows while they keep dying."""
        code = worker.process.exitcode
        if worker.generation != self.generation:  # (of a generation still starting: _check_generation says it)
            return
        stable = worker.ready_at is not None and now - worker.ready_at >= RestartBackoff.STABLE
        delay = self.backoff.failed(now, stable)
        self.next_restart = max(self.next_restart, now + delay)
        if worker.ready:
            logger.error("Worker [%d] died unexpectedly (%s); restarting in %.1f s.", worker.process.pid,
                         _describe_exit(code), delay)
        else:
            logger.error("Worker [%d] died unexpectedly (%s) before it was ready: %d failed starts in a row "
                         "(see its error above); restarting in %.1f s.", worker.process.pid, _describe_exit(code),
                         self.backoff.failures, delay)

    def _shutdown(self) -> None:
        """Stop every worker gracefully. The listen queue is drained once, as one process does: the other workers
        leave the shared socket first while one (``last``) keeps accepting; then the supervisor closes its own
        copy, and ``last`` accepts what is still queued and closes the socket for good (no client reset)."""
        logger.info("Shutting down supervisor process [%d]", os.getpid())
        self._watch_stop.set()
        serving = [w for w in self.workers if w.ready and w.stopping_since is None and w.process.exitcode is None]
        last = serving[0] if serving else None
        for worker in list(self.workers):
            if worker is not last:
                self._terminate(worker, graceful=True)
        deadline = time.monotonic() + DOOR_WAIT
        while time.monotonic() < deadline and any(
                w.process.exitcode is None and not w.door_closed for w in self.workers if w is not last):
            for worker in list(self.workers):
                self._read_messages(worker)
            time.sleep(0.01)
        self._close_sockets()
        if last is not None:
            try:
                last.control.send("stop-last")
                last.stopping_since = time.monotonic()
            except OSError:
                self._terminate(last, graceful=True)
        limit = self._kill_deadline()
        started = time.monotonic()
        while self.workers:
            for worker in list(self.workers):
                self._reap(worker, timeout=0)
                if worker.process.exitcode not in (None, 0) and worker.ready:
                    self.exit_code = self.exit_code or EXIT_CUT_SHORT  # (a worker's shutdown was cut short)
            if self._interrupts > 1 or (limit is not None and time.monotonic() - started > limit):
                for worker in list(self.workers):
                    self._terminate(worker, graceful=False)
                    self._reap(worker, timeout=1)
                self.exit_code = self.exit_code or EXIT_CUT_SHORT
            time.sleep(0.02)
        logger.info("Finished supervisor process [%d]", os.getpid())

    def _close_sockets(self) -> None:
        close_listeners(self.config, self.sockets, owner=True)
        self.sockets = []

    def _install_signal_handlers(self) -> None:
        def stop(signum, frame):
            self._interrupts += 1 if signum == signal.SIGINT else 0
            if self._interrupts > 1:
                logger.warning("Second interrupt: killing workers now.")
                for worker in list(self.workers):
                    self._terminate(worker, graceful=False)
                if self.metrics is not None:
                    self.metrics.remove_directory()
                os._exit(1)
            self._stop_requested = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        def hangup(signum, frame):
            self._hangup = True

        def dump(signum, frame):  # each worker lists where its handlers blocked (docs/blocking.md)
            for worker in list(self.workers):
                # (only a ready one has its handler: SIGUSR1 would end one still starting)
                if worker.ready and worker.process.pid is not None:
                    try:
                        os.kill(worker.process.pid, signal.SIGUSR1)
                    except ProcessLookupError:
                        pass

        signal.signal(signal.SIGHUP, hangup)
        signal.signal(signal.SIGUSR1, dump)

    # -- reload -------------------------------------------------------------------------------------------

    def _start_watcher(self) -> None:
        from pathlib import Path

        import watchfiles

        dirs = [Path(d).resolve() for d in (self.config.reload_dirs or (os.getcwd(),))]
        includes = self.config.reload_includes or ("*.py",)
        excludes = self.config.reload_excludes or DEFAULT_RELOAD_EXCLUDES

        def wanted(change, path: str) -> bool:
            name = Path(path)
            if any(name.match(pattern) or part_matches(name, pattern) for pattern in excludes):
                return False
            return any(name.match(pattern) for pattern in includes)

        def part_matches(path, pattern: str) -> bool:
            return any(Path(part).match(pattern) for part in path.parts[:-1])

        delay = self.config.reload_delay
        debounce_ms = 50 if delay is None else max(1, int(delay * 1000))  # (--reload-delay: changes settle)

        def watch() -> None:
            for changes in watchfiles.watch(*dirs, watch_filter=wanted, stop_event=self._watch_stop,
                                            debounce=debounce_ms, step=20, raise_interrupt=False):
                with self._reload_lock:
                    self._reload_changes.extend(str(Path(p).name) for _, p in changes)

        logger.info("Will watch for changes in: %s", ", ".join(str(d) for d in dirs))
        threading.Thread(target=watch, name="hybrid-reload-watcher", daemon=True).start()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
