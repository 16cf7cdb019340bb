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

from hybrid.config import ServerConfig
from hybrid.server import (
    EXIT_STARTUP_FAILED,
    StartupError,
    bind_listeners,
    close_listeners,
    describe_listeners,
    startup_banner,
)

logger = logging.getLogger("hybrid.error")

HEALTHCHECK_INTERVAL = 1.0
RESTART_BACKOFF_MAX = 10.0
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
    stopping_since: float | None = None
    last_pong: float = field(default_factory=time.monotonic)
    ping_sent: float | None = None


class Supervisor:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.ctx = multiprocessing.get_context("spawn")
        self.sockets = []
        self.workers: list[Worker] = []
        self.generation = 0
        self.backoff = 0.1
        self.next_restart = 0.0
        self.last_restart = 0.0
        self.exit_code = 0
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

    def _start_generation(self) -> list[Worker] | None:
        """Start --workers processes and wait until each is ready; None if any failed to start."""
        self.generation += 1
        new = [self._spawn(self.generation) for _ in range(self.config.workers)]
        while True:
            for worker in new:
                self._read_messages(worker)
            if all(w.ready for w in new):
                return new
            failed = [w for w in new if not w.ready and not w.process.is_alive()]
            if failed or self._stop_requested:
                if failed:
                    self.exit_code = failed[0].process.exitcode or 1
                for worker in new:
                    self._terminate(worker, graceful=False)
                for worker in new:
                    self._reap(worker)
                return None
            time.sleep(0.02)

    def _read_messages(self, worker: Worker) -> None:
        try:
            while worker.control.poll():
                message = worker.control.recv()
                if isinstance(message, tuple) and message[0] == "ready":
                    worker.ready = True
                    worker.last_pong = time.monotonic()
                elif message == "pong":
                    worker.last_pong = time.monotonic()
                    worker.ping_sent = None
                elif isinstance(message, tuple) and message[0] == "recycle" and worker.stopping_since is None:
                    self._recycle(worker)
        except (EOFError, OSError):
            pass

    def _recycle(self, worker: Worker) -> None:
        """Start a replacement first, then let the old worker drain: capacity never drops to zero."""
        logger.info("Recycling worker [%d] after its request limit.", worker.process.pid)
        replacement = self._spawn(worker.generation)
        deadline = time.monotonic() + 60
        while not replacement.ready and replacement.process.is_alive() and time.monotonic() < deadline:
            self._read_messages(replacement)
            time.sleep(0.02)
        self._terminate(worker, graceful=True)

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
                logger.error("--reload needs the watchfiles package: pip install 'hybrid[reload]'")
                return 1
        try:
            self.sockets = bind_listeners(self.config)
        except StartupError as exc:
            logger.error("%s", exc)
            return EXIT_STARTUP_FAILED
        self._install_signal_handlers()
        logger.info("Started supervisor process [%d]", os.getpid())
        if self.config.metrics_port is not None and not self._start_metrics():
            self._close_sockets()
            return EXIT_STARTUP_FAILED
        if self._start_generation() is None:
            logger.error("Workers failed to start; exiting.")
            self._close_sockets()
            return self.exit_code or 1
        logger.info("%s", startup_banner(self.config, describe_listeners(self.config, self.sockets)))
        if self.config.reload:
            self._start_watcher()
        while not self._stop_requested:
            self._tick()
            time.sleep(0.05)
        self._shutdown()
        return 0

    def _tick(self) -> None:
        now = time.monotonic()
        if self._hangup:
            self._hangup = False
            self._replace_all("SIGHUP")
        with self._reload_lock:
            changes, self._reload_changes = self._reload_changes, []
        if changes:
            logger.warning("Detected changes in %s. Reloading...", ", ".join(sorted(set(changes))[:5]))
            self._replace_all("reload")
        for worker in list(self.workers):
            self._read_messages(worker)
            if worker.process.exitcode is not None:
                self._reap(worker)
                if worker.stopping_since is None:
                    logger.error("Worker [%d] died unexpectedly (%s).", worker.process.pid,
                                 _describe_exit(worker.process.exitcode))
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
        # Keep the current generation at full strength, with backoff when workers keep dying.
        alive = [w for w in self.workers if w.generation == self.generation and w.stopping_since is None]
        missing = self.config.workers - len(alive)
        if missing > 0 and now >= self.next_restart:
            # Workers that die right after a restart get restarted ever more slowly (up to 10 s apart).
            recent = now - self.last_restart < 5
            self.backoff = min(self.backoff * 2, RESTART_BACKOFF_MAX) if recent else 0.1
            self.last_restart = now
            self.next_restart = now + self.backoff
            for _ in range(missing):
                worker = self._spawn(self.generation)
                logger.info("Started replacement worker [%d].", worker.process.pid)

    def _replace_all(self, why: str) -> None:
        old = [w for w in self.workers if w.stopping_since is None]
        new = self._start_generation()
        if new is None:
            # Keep serving with the old workers rather than go down (e.g. a syntax error while reloading).
            self.generation += 1
            for worker in old:
                worker.generation = self.generation
            logger.error("New workers failed to start (%s); keeping the running ones.", why)
            return
        for worker in old:
            self._terminate(worker, graceful=True)
        logger.info("Replaced %d workers (%s).", len(old), why)

    def _shutdown(self) -> None:
        logger.info("Shutting down")
        self._watch_stop.set()
        for worker in list(self.workers):
            self._terminate(worker, graceful=True)
        # Stop accepting now: new clients are refused at once instead of queueing behind the drain.
        self._close_sockets()
        limit = self._kill_deadline()
        started = time.monotonic()
        while self.workers:
            for worker in list(self.workers):
                self._reap(worker, timeout=0)
            if self._interrupts > 1 or (limit is not None and time.monotonic() - started > limit):
                for worker in list(self.workers):
                    self._terminate(worker, graceful=False)
                    self._reap(worker, timeout=1)
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

        signal.signal(signal.SIGHUP, hangup)

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

        def watch() -> None:
            for changes in watchfiles.watch(*dirs, watch_filter=wanted, stop_event=self._watch_stop,
                                            debounce=50, step=20, raise_interrupt=False):
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
