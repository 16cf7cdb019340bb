"""Helpers of the cross-loop pattern tests (tests/test_crossloop_*.py, issue 21): uvicorn as the reference
server, subscribers in threads, delivery latency per message.

A round publishes one message and waits until every subscriber has it; a message any subscriber lacks after
ROUND_TIMEOUT fails the test at once (the bug was a silent hang: nothing arrived at all). uvicorn and hybrid (in
both modes) run side by side and take turns, round by round.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import httpx
from websockets.sync.client import connect as ws_connect

from .support import Server

CLIENTS = 8
ROUNDS = 50              # x 8 clients: 400 deliveries per server
ROUND_TIMEOUT = 2.0
# What these tests exist to catch: a wake-up lost across loops (the message waits for the loop's next event: a
# hang, which ROUND_TIMEOUT fails at once) or put off until some timer fires (hundreds of ms to seconds). The
# latency itself (issue 21: p99 under 10 ms, as uvicorn) is a benchmark's claim, pinned to cores and interleaved:
# bench/scenarios/crossloop.py. On a 2-core CI host shared with other work a server process loses whole scheduler
# periods (or a collection runs): one such stall delays every delivery of its round, 8 of them (seen in CI: --mode
# async 85 ms beside uvicorn's 20 ms, and 170 ms once in a dry run). So the test reads the 97th percentile of 400
# deliveries, the 13th worst: one stalled round cannot set it, two can; the bound is the target, or twice
# uvicorn's on a machine that slows uvicorn too, plus one such stall. (A wake-up put off by 300 ms, injected into
# 5% of them, still fails it: ~20 of the 400 deliveries late, 13 suffice.)
TARGET = 0.010  # (the bench's p99 target, issue 21)
QUANTILE = 0.97
STALL_ALLOWANCE = 0.100
APP = "bench.apps.crossloop_patterns:app"
# Streams whose client left wait for their next message to notice (Starlette's StreamingResponse no longer
# listens for http.disconnect under ASGI 2.4); a short graceful bound ends them at stop.
HYBRID = (APP, "--port", "0", "--no-access-log", "--timeout-graceful-shutdown", "1")


class Uvicorn(Server):
    """uvicorn (uvloop, httptools) serving the same app from a socket this test bound on loopback."""

    def __init__(self, app: str = APP) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        super().__init__(app, pass_fds=(self.listener.fileno(),), ready=False)
        self.host, self.port = self.listener.getsockname()

    @property
    def cmd(self) -> list[str]:
        # --timeout-graceful-shutdown 1 as hybrid's (HYBRID): without it uvicorn waits at stop for a handler that
        # never returns (/ws-queue awaits its Queue after the client left) until the SIGKILL 10 s later.
        return [sys.executable, "-m", "uvicorn", *self.args, "--fd", str(self.listener.fileno()), "--loop", "uvloop",
                "--http", "httptools", "--ws", "websockets", "--log-level", "warning", "--timeout-graceful-shutdown",
                "1"]

    def start(self, timeout: float = 10.0) -> Uvicorn:
        super().start()
        self.listener.close()  # (uvicorn has its own copy)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"uvicorn not ready within {timeout} s:\n{self.output}")


class Deliveries:
    """What the subscribers received: message -> arrival times (monotonic, this process)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.ready = 0
        self.got: dict[str, list[float]] = {}
        self.errors: list[BaseException] = []

    def record(self, message: str) -> None:
        now = time.monotonic()
        with self.cond:
            if message == "ready":
                self.ready += 1
            else:
                self.got.setdefault(message, []).append(now)
            self.cond.notify_all()

    def failed(self, exc: BaseException) -> None:
        with self.cond:
            self.errors.append(exc)
            self.cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate() or self.errors, timeout) and not self.errors


def sse_subscriber(url: str, deliveries: Deliveries) -> None:
    """Reads one SSE stream until the message 'bye'."""
    try:
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client, client.stream(
                "GET", url, headers={"accept": "text/event-stream"}) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    message = line[5:].strip()
                    if message == "bye":
                        return
                    deliveries.record(message)
    except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
        deliveries.failed(exc)


def ws_subscriber(url: str, deliveries: Deliveries) -> None:
    """One WebSocket client: records every message until 'bye'."""
    try:
        with ws_connect(url, open_timeout=5, close_timeout=2) as ws:
            while (message := ws.recv(timeout=10)) != "bye":
                deliveries.record(message)
    except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
        deliveries.failed(exc)


@contextlib.contextmanager
def http_publisher(server: Server, path: str):
    """publish(message): POST ``path + message``, answered 200."""
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        def publish(message: str) -> None:
            assert client.post(path + message).status_code == 200

        yield publish


@contextlib.contextmanager
def ws_publisher(server: Server, path: str):
    """publish(message): one more WebSocket client sends it (the app broadcasts it from its WebSocket handler)."""
    with ws_connect(ws_url(server, path), open_timeout=5, close_timeout=2) as ws:
        yield ws.send


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@contextlib.contextmanager
def _subscribed(server: Server, subscribe, stream_path: str, publisher):
    """CLIENTS subscribers of ``server`` on ``stream_path``, all ready; yields ``one_round(i)``, which publishes
    message i and returns its deliveries' latencies (publish called to message received). 'bye' ends them."""
    deliveries = Deliveries()
    url = ws_url(server, stream_path) if subscribe is ws_subscriber else server.url + stream_path
    threads = [threading.Thread(target=subscribe, args=(url, deliveries), daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    with publisher(server) as publish:
        try:
            assert deliveries.wait(lambda: deliveries.ready == CLIENTS, 10.0), (deliveries.ready, deliveries.errors)

            def one_round(i: int) -> list[float]:
                message = f"m{i}"
                sent = time.monotonic()
                publish(message)
                ok = deliveries.wait(lambda: len(deliveries.got.get(message, ())) == CLIENTS, ROUND_TIMEOUT)
                got = deliveries.got.get(message, [])
                assert ok, (f"{type(server).__name__}: message {i} reached {len(got)} of {CLIENTS} subscribers "
                            f"within {ROUND_TIMEOUT} s; errors: {deliveries.errors}")
                return [t - sent for t in got]

            yield one_round
        finally:
            publish("bye")
            for t in threads:
                t.join(5)


@contextlib.contextmanager
def running(*servers: Server):
    """Starts ``servers`` side by side and, after the block, stops them side by side: each stop waits up to 1 s
    (--timeout-graceful-shutdown) for streams whose clients left, and one after another they took three times that."""
    with ThreadPoolExecutor(len(servers)) as pool:
        starts = [pool.submit(srv.start) for srv in servers]
        try:
            for f in starts:
                f.result()
            yield servers
        finally:
            wait(starts)  # a start still under way when another failed: stop its server too, once it has one
            list(pool.map(Server.stop, servers))


def measure(servers: list[Server], subscribe, stream_path: str, publisher) -> list[list[float]]:
    """For each server, CLIENTS subscribers on ``stream_path``; ROUNDS messages sent with ``publisher(server)``,
    one at a time, the servers taking turns round by round (so a burst of load on this shared machine hits them
    alike); returns each server's delivery latencies, sorted."""
    # This process runs dozens of client threads: with the default 5 ms GIL switch interval a reader that has its
    # message may wait that long for the GIL, which is the client's latency, not the server's.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    latencies: list[list[float]] = [[] for _ in servers]
    with contextlib.ExitStack() as stack:
        stack.callback(sys.setswitchinterval, switch)
        rounds = [stack.enter_context(_subscribed(srv, subscribe, stream_path, publisher)) for srv in servers]
        for i in range(ROUNDS):
            for one_round, lat in zip(rounds, latencies, strict=True):
                lat.extend(one_round(i))
    return [sorted(lat) for lat in latencies]


def late(latencies: list[float]) -> float:
    """The QUANTILE of sorted latencies."""
    return latencies[max(0, int(len(latencies) * QUANTILE) - 1)]


def compare(name: str, ours: list[float], theirs: list[float]) -> None:
    """Every message delivered, and hybrid's 97th percentile under the target (or, on a machine so loaded that
    uvicorn's own is over half the target, twice uvicorn's), give or take one stall of a loaded host
    (STALL_ALLOWANCE)."""
    assert len(ours) == len(theirs) == CLIENTS * ROUNDS
    bound = max(TARGET, 2 * late(theirs)) + STALL_ALLOWANCE
    print(f"{name}: hybrid p50 {ours[len(ours) // 2] * 1e3:.2f} ms p97 {late(ours) * 1e3:.2f} ms; "
          f"uvicorn p50 {theirs[len(theirs) // 2] * 1e3:.2f} ms p97 {late(theirs) * 1e3:.2f} ms")
    assert late(ours) < bound, (f"{name}: hybrid p97 {late(ours) * 1e3:.2f} ms over {bound * 1e3:.1f} ms "
                                f"(uvicorn p97 {late(theirs) * 1e3:.2f} ms)")
