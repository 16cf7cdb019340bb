"""hybrid's own per-request cost, in process: no load generator, no peers (docs/performance.md).

One Connection over a socketpair, driven the way a SyncWorker drives it (``on_readable`` -> H1Protocol ->
scope -> RequestTask -> send -> ``sock.send``), on a real uvloop loop with a real monitor slot. Prints µs per
request; ``--profile`` adds the cProfile table (tottime) of the same path.

    .venv/bin/python -m bench.request_path [--app bench.apps.plaintext:app] [--json] [--requests 50000] [--profile]
        [--access-log off|text|json] [--collector none|noop|metrics]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import time

from hybrid.config import ServerConfig
from hybrid.connection import Connection, ConnectionSet
from hybrid.importer import load_app
from hybrid.server import Server
from hybrid.sync_worker import new_event_loop

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


class _Worker:
    """What Connection needs of a SyncWorker: a loop, lifespan state, a monitor slot."""

    def __init__(self, server: Server) -> None:
        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.state: dict = {}
        self.conn_set = None
        self.monitor = server.monitor
        self.slot = self.monitor.add_slot(-1)
        self.pending = 0  # requests of this loop still running after their first step
        self.name = "bench-worker"

    def step_blocked(self, task, cycle, took: float) -> None:
        pass

    def enter_app(self, fd: int) -> None:
        self.monitor.enter(self.slot, fd)

    def leave_app(self, conn, cycle=None) -> None:  # (a later step passes its cycle: task.pyx)
        self.monitor.leave(self.slot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="bench.apps.plaintext:app")
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--json", action="store_true", help="POST the json scenario's 1 KB body instead of GET /")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--access-log", choices=("off", "text", "json"), default="off",
                        help="log each request (to /dev/null): what the access log costs per request")
    parser.add_argument("--collector", choices=("none", "noop", "metrics"), default="none",
                        help="attach a lifecycle collector: one that ignores every event (what making the events "
                             "costs), or --metrics-port's (its Prometheus counters, nothing served)")
    args = parser.parse_args()
    request = REQUEST
    if args.json:
        from bench.wrk import JSON_BODY

        request = (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(JSON_BODY)) + JSON_BODY

    # (--collector metrics: the collector --metrics-port attaches, as it attaches it; its endpoint is not started)
    config = ServerConfig(app=args.app, access_log=args.access_log != "off", lifespan="off", threads=1,
                          access_log_format="json" if args.access_log == "json" else "text",
                          metrics_port=0 if args.collector == "metrics" else None)
    if config.access_log:
        import sys

        from hybrid.logs import setup_logging_for

        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the log's stream, for the whole run
        setup_logging_for(config)
    collector = None
    if args.collector == "noop":
        collector = type("NoopCollector", (), {"event": lambda self, event: None})()
    server = Server(config, app=load_app(args.app), lifecycle_collector=collector)
    worker = _Worker(server)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    conn_set = ConnectionSet([])
    conn = Connection(server, ours, conn_set, ("127.0.0.1", 1), ("127.0.0.1", 2))
    conn_set.add(conn)

    def run(n: int) -> None:
        for _ in range(n):
            theirs.send(request)
            conn.on_readable(worker)
            if not theirs.recv(65536):
                raise SystemExit("the connection closed: the app must answer GET / with keep-alive")

    run(1000)  # warm up
    started, cpu = time.perf_counter(), time.process_time()
    run(args.requests)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{args.app}: {elapsed / args.requests * 1e6:.2f} µs per request "
          f"({args.requests / elapsed:,.0f} requests/s on one core, socketpair I/O included; "
          f"{cpu / args.requests * 1e6:.2f} µs of CPU time, steadier on a busy machine)")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, 20000)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
