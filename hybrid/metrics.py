"""``--metrics-port`` with worker processes: one endpoint, served by the supervisor, covering every worker.

Each worker counts its own events (``lifecycle.MetricsCollector``) with prometheus-client's multiprocess mode: the
values live in memory-mapped files, one per process and metric type, in a directory made for this run
(``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before it starts any worker, so each worker's
prometheus-client picks it up at import). The supervisor serves ``/metrics`` by reading them all
(``MultiProcessCollector``): counters and histograms are summed over every worker that ever ran in this run (a
replaced worker's counts stay: a counter never goes down), gauges with ``multiprocess_mode="livesum"`` (open
connections) over the live workers only. When a worker exits or is killed, the supervisor marks it dead
(``mark_process_dead``), which drops its live gauges; the directory is removed when the supervisor exits.

Metrics an app defines with prometheus-client in a worker land in the same directory and are served too.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

logger = logging.getLogger("hybrid.error")

ENV = "PROMETHEUS_MULTIPROC_DIR"


class MultiprocessMetrics:
    """The supervisor's side: the per-run directory, the endpoint, and the bookkeeping of dead workers."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="hybrid-metrics-")
        self._previous = os.environ.get(ENV)
        os.environ[ENV] = self.path  # inherited by the workers spawned from now on
        self.http = None

    def serve(self, host: str, port: int) -> int:
        """Start the endpoint (a daemon thread); returns the port. OSError when it cannot bind."""
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.path)
        self.http = start_http_server(port, addr=host, registry=registry)
        return self.http[0].server_port

    def worker_exited(self, pid: int) -> None:
        """Drop the live gauges of a worker that is gone (its counters stay in the totals)."""
        from prometheus_client.multiprocess import mark_process_dead

        try:
            mark_process_dead(pid, self.path)
        except OSError as exc:
            logger.warning("Could not clear the metrics of worker [%d]: %s", pid, exc)

    def close(self) -> None:
        if self.http is not None:
            self.http[0].shutdown()
            self.http[0].server_close()
            self.http = None
        if self._previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self._previous
        self.remove_directory()

    def remove_directory(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
