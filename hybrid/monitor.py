"""Threads of one process: the SyncWorkers, the spares, and the monitor that hands sets between them.

The monitor itself is compiled (``hybrid/_speedups/monitor.pyx``) and runs without the GIL, so a handler that
holds the GIL cannot starve it. This module keeps the Python side: starting threads, keeping one spare ready,
and never exceeding ``--max-threads``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from hybrid._speedups.monitor import Monitor, gil_futex
from hybrid.shutdown import check_startup, wait_until

logger = logging.getLogger("hybrid.error")

SPARE_IDLE_TIMEOUT = 30.0


class ThreadManager:
    def __init__(self, server, config) -> None:
        self.server = server
        self.max_threads = config.max_threads
        # Tick at half the threshold (at most 0.5 ms): a blocked set waits threshold + tick at worst.
        tick = min(config.blocking_threshold / 2, 0.0005)
        gil_futex()  # (once per process: lets the monitor tell a thread waiting for the GIL from a blocked one)
        # (one slot more than threads: the async pool's loop is watched for blocking steps, hybrid/stack_sampler.py)
        self.monitor = Monitor(config.max_threads + 1, config.blocking_threshold, tick)
        self.workers = []
        self._lock = threading.Lock()
        self._starting = 0
        self.peak = 0
        # A spare thread idle this long ends (one spare always stays): a burst of blocked handlers does not leave
        # dozens of threads, each with its loop and lifespan resources, behind it.
        self.spare_idle_timeout = SPARE_IDLE_TIMEOUT
        self._gc_hook = self.monitor.gc_callback
        self._monitor_thread = threading.Thread(target=self.monitor.run, name="hybrid-monitor", daemon=True)

    def start(self, count: int, deadline: float | None = None, abort=lambda: False) -> None:
        """Start ``count`` threads one after the other (lifespans start in a known order, and end in reverse),
        each once the one before has finished its lifespan startup. Stop at the first failure (the others'
        startups would only repeat it), at ``deadline`` (--timeout-startup) or when ``abort()`` (a signal)."""
        from hybrid.sync_worker import SyncWorker

        outcome = "ready"
        new = []
        for i in range(count):
            worker = SyncWorker(self.server, f"hybrid-worker-{i}")
            new.append(worker)
            worker.start()
            outcome = wait_until(worker.ready, deadline, abort) if deadline is not None else "ready"
            if outcome == "ready":
                worker.ready.wait()
            if outcome != "ready" or worker.startup_error is not None:
                break
        started = [w for w in new if w.ready.is_set() and w.startup_error is None]
        with self._lock:
            self.workers.extend(started)
            self.peak = len(self.workers)
        check_startup(outcome, "a serving thread", self.server.config.timeout_startup)
        errors = [w.startup_error for w in new if w.startup_error is not None]
        if errors:
            raise errors[0]
        # A garbage collection holds the GIL in whatever step it lands in: the monitor does not count it as app time.
        self.start_monitor()

    def start_monitor(self) -> None:
        """(--mode async starts no threads but this: the monitor then only watches the pool's loop.)"""
        gc.callbacks.append(self._gc_hook)
        self._monitor_thread.start()

    def give_sets(self, sets) -> None:
        for worker, conn_set in zip(self.workers, sets, strict=False):
            self.monitor.give(worker.slot, conn_set.fd)
            worker.loop.call_soon_threadsafe(worker._on_wake, True)  # (a first set, not a takeover)

    def ensure_spare(self) -> None:
        """Keep one spare ready or starting, so that the next takeover never waits for a blocked handler.

        Called when a spare takes over a set and when a started spare is ready. Whichever comes last sees the
        true state: a spare handed a set the instant it registered (still counted as starting when it asked)
        is followed by another one as soon as its starter finishes.
        """
        with self._lock:
            if self.server.draining or self._starting or self.monitor.spare_count() > 0:
                return
            if self.monitor.thread_count() + self._starting >= self.max_threads:
                logger.warning("All %d threads are busy (--max-threads); blocked handlers stall others.",
                               self.max_threads)
                return
            self._starting += 1
        threading.Thread(target=self._start_spare, name="hybrid-spare-starter", daemon=True).start()

    def _start_spare(self) -> None:
        from hybrid.sync_worker import SyncWorker

        worker = SyncWorker(self.server, f"hybrid-worker-{len(self.workers)}")
        try:
            worker.start()
            worker.ready.wait()
        finally:
            with self._lock:
                self._starting -= 1
                if worker.startup_error is None:
                    self.workers.append(worker)
                    self.peak = max(self.peak, len(self.workers))
        if worker.startup_error is not None:
            logger.error("A spare thread failed its lifespan startup: %s", worker.startup_error)
            return
        self.ensure_spare()

    def exited(self, worker) -> None:
        with self._lock:
            if worker in self.workers:
                self.workers.remove(worker)

    def stop(self, deadline: float | None = None, join_until: float | None = None) -> list:
        """Stop every loop (each runs its lifespan shutdown, bounded by ``deadline``) and the monitor; wait for
        the threads until ``join_until`` (default ``deadline``). Returns the threads still running then (stuck in
        app code)."""
        join_until = deadline if join_until is None else join_until
        self.monitor.stop()
        try:
            gc.callbacks.remove(self._gc_hook)
        except ValueError:  # start() failed before adding it
            pass
        with self._lock:
            workers = list(self.workers)
        for worker in workers:
            try:
                worker.stop(deadline)
            except RuntimeError:  # its loop is already closed
                pass
        for worker in workers:
            worker.thread.join(timeout=None if join_until is None else max(0.0, join_until - time.monotonic()))
        if self._monitor_thread.is_alive():
            self._monitor_thread.join(timeout=1)
        return [w for w in workers if w.thread.is_alive()]
