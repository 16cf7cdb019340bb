"""hybrid's own per-request cost, in process: no load generator, no peers (docs/performance.md).

One Connection over a socketpair, driven the way a SyncWorker drives it (``on_readable`` -> H1Protocol ->
scope -> RequestTask -> send -> ``sock.send``), on a real uvloop loop with a real monitor slot. Prints µs per
request; ``--profile`` adds the cProfile table (tottime) of the same path.

By default each request is served by calling ``on_readable`` directly, which is exact for a request answered inline
(its first task step) and needs no loop iteration. ``--loop`` serves through the loop as a SyncWorker does: a root
task runs the loop (anyio finds it and keeps its worker threads, as in the server), the connection's epoll set is
registered with ``add_reader`` and the client side waits for each response in the same loop. A request that awaits
(a FastAPI ``def`` endpoint: anyio's thread pool, then a wake-up of this loop) needs it; it also counts the loop
iterations, ``epoll_wait`` and the set's poll every request pays in the server.

    .venv/bin/python -m bench.request_path [--app bench.apps.plaintext:app] [--json] [--path /] [--loop]
        [--server hybrid|uvicorn] [--requests 50000] [--warmup 1000] [--profile] [--access-log off|text|json]
        [--collector none|noop|metrics]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import threading
import time

from hybrid._speedups.held import LoopHeld

from hybrid.asgi.task import child_task_factory
from hybrid.config import ServerConfig
from hybrid.connection import Connection, ConnectionSet
from hybrid.importer import load_app
from hybrid.server import Server
from hybrid.sync_worker import new_event_loop

REQUEST = b"GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


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
        self.ident = threading.get_ident()
        self.loop_held = LoopHeld(self.loop)  # (responses of resumed steps held to the loop iteration's end)

    def step_blocked(self, task, cycle, took: float) -> None:
        pass

    def enter_app(self, fd: int) -> None:
        self.monitor.enter(self.slot, fd)

    def leave_app(self, conn, cycle=None) -> None:  # (a later step passes its cycle: task.pyx)
        self.monitor.leave(self.slot)

    def left_blocked(self, conn, cycle) -> None:
        pass


class _LoopDriver:
    """``--loop``: requests one after another through the running loop, the way a SyncWorker meets them: the set's
    epoll fd is a reader of the loop (``SyncWorker._on_ready``), and so is the client's end, which reads each
    response and sends the next request. A request that awaits is finished by the loop (anyio's thread pool wakes
    it) and its connection goes back into the set before the next request is read."""

    def __init__(self, worker: _Worker, conn_set: ConnectionSet | None, theirs: socket.socket, request: bytes,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.worker, self.conn_set, self.theirs, self.request = worker, conn_set, theirs, request
        self.loop = loop
        self.left = 0
        self.done: asyncio.Future | None = None

    async def main(self) -> None:
        """The loop's root task, as ``SyncWorker._main`` is in the server (anyio ties its threads to it)."""
        loop = self.loop
        self.done = loop.create_future()
        if self.conn_set is not None:
            loop.set_task_factory(child_task_factory)
            loop.add_reader(self.conn_set.fd, self._on_ready)
        loop.add_reader(self.theirs.fileno(), self._on_response)
        try:
            await self.done
        finally:
            if self.conn_set is not None:
                loop.remove_reader(self.conn_set.fd)
            loop.remove_reader(self.theirs.fileno())

    def _on_ready(self) -> None:
        conns, held = self.conn_set.conns, self.conn_set.held
        for fd, _events in self.conn_set.epoll.poll(0, 64):
            conn = conns.get(fd)
            if conn is not None and conn.cycle is None and conn.registered:
                conn.on_readable(self.worker, held)
        if held:  # (the batch's held responses leave at its end, as in SyncWorker._on_ready)
            held.flush()

    def _on_response(self) -> None:
        data = self.theirs.recv(65536)
        if not data:
            self.done.set_exception(SystemExit("the connection closed: the app must answer with keep-alive"))
            return
        if not data.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in data:
            return  # (the rest of the head follows)
        self.left -= 1
        if self.left > 0:
            self.theirs.send(self.request)
        elif not self.done.done():
            self.done.set_result(None)

    def run(self, n: int) -> None:
        self.left = n
        self.theirs.send(self.request)
        self.loop.run_until_complete(self.main())


def _uvicorn_loop(app_path: str, ours: socket.socket) -> asyncio.AbstractEventLoop:
    """``--server uvicorn``: the same socketpair served by uvicorn's httptools protocol on a plain uvloop loop, for
    a per-request comparison with the same app, driver and measurement (uvicorn's server loop around it, its
    accept and its timers, are left out)."""
    import uvloop
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    config = Config(app=app_path, loop="none", http="httptools", lifespan="off", access_log=False,
                    log_level="warning")
    config.load()
    state = ServerState()

    async def connect() -> None:
        await loop.connect_accepted_socket(
            lambda: HttpToolsProtocol(config=config, server_state=state, app_state={}, _loop=loop), ours)

    loop.run_until_complete(connect())
    return loop


def _callgrind_dump() -> None:
    """Dump (and zero) callgrind's counters of this process; its instructions for it are a few thousand."""
    import subprocess

    subprocess.run(["callgrind_control", "--dump", str(os.getpid())], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="bench.apps.plaintext:app")
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--warmup", type=int, default=1000, help="requests served before the measured ones")
    parser.add_argument("--json", action="store_true", help="POST the json scenario's 1 KB body instead of a GET")
    parser.add_argument("--path", default="/", help="the request's path (a framework app's route)")
    parser.add_argument("--loop", action="store_true",
                        help="serve through the running loop as a SyncWorker does (needed for requests that await, "
                             "such as FastAPI def endpoints)")
    parser.add_argument("--server", choices=("hybrid", "uvicorn"), default="hybrid",
                        help="uvicorn: serve the socketpair with uvicorn's httptools protocol instead (implies "
                             "--loop), to compare the same app's cost per request")
    parser.add_argument("--callgrind", action="store_true",
                        help="run under valgrind --tool=callgrind: its counters are dumped before and after the "
                             "measured requests (callgrind_control), so the last dump holds exactly those requests")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--access-log", choices=("off", "text", "json"), default="off",
                        help="log each request (to /dev/null): what the access log costs per request")
    parser.add_argument("--collector", choices=("none", "noop", "metrics"), default="none",
                        help="attach a lifecycle collector: one that ignores every event (what making the events "
                             "costs), or --metrics-port's (its Prometheus counters, nothing served)")
    args = parser.parse_args()
    path = args.path.encode("latin-1")
    request = REQUEST % path
    if args.json:
        from bench.wrk import JSON_BODY

        request = (b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % (path, len(JSON_BODY))) + JSON_BODY

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
    worker.conn_set = conn_set
    conn = Connection(server, ours, conn_set, ("127.0.0.1", 1), ("127.0.0.1", 2))
    conn_set.add(conn)

    held = conn_set.held

    def run_inline(n: int) -> None:
        for _ in range(n):
            theirs.send(request)
            conn.on_readable(worker, held)  # (a batch of one: its response is held, then flushed)
            if held:
                held.flush()
            if conn.cycle is not None:
                raise SystemExit("the request awaits past its first step: run it with --loop")
            if not theirs.recv(65536):
                raise SystemExit("the connection closed: the app must answer with keep-alive")

    if args.server == "uvicorn":
        conn_set.remove(conn)
        theirs.setblocking(False)
        run = _LoopDriver(worker, None, theirs, request, _uvicorn_loop(args.app, ours)).run
    elif args.loop:
        theirs.setblocking(False)
        run = _LoopDriver(worker, conn_set, theirs, request, worker.loop).run
    else:
        run = run_inline

    run(args.warmup)
    if args.callgrind:
        _callgrind_dump()  # start-up and warm-up
    started, cpu = time.perf_counter(), time.process_time()
    run(args.requests)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if args.callgrind:
        _callgrind_dump()  # the measured requests alone
    print(f"{args.app}: {elapsed / args.requests * 1e6:.2f} µs per request "
          f"({args.requests / elapsed:,.0f} requests/s on one core, socketpair I/O included; "
          f"{cpu / args.requests * 1e6:.2f} µs of CPU time, steadier on a busy machine)")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, 20000)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
