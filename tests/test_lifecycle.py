"""Lifecycle events (hybrid/lifecycle.py) from a real server: a collector given to hybrid.run() in a subprocess,
and --metrics-port serving Prometheus text."""

import json
import re
import socket
import sys
import time

import pytest

from .support import REPO, Server, run_cli

pytestmark = pytest.mark.timeout(60)

OPS = "tests.apps.ops:app"

SCRIPT = """
import dataclasses, json, sys, threading
sys.path.insert(0, {repo!r})
import hybrid
from hybrid import lifecycle
from tests.apps.ops import app

lock = threading.Lock()

class Collector:
    def event(self, event):
        fields = {{k: getattr(event, k) for k in event.__slots__}}
        try:
            event.t_ns = 0
        except dataclasses.FrozenInstanceError:
            fields["frozen"] = dataclasses.is_dataclass(event) and event == dataclasses.replace(event)
        with lock, open({out!r}, "a") as f:
            f.write(json.dumps([type(event).__name__, fields]) + "\\n")

assert isinstance(Collector(), lifecycle.LifecycleCollector)
hybrid.run(app, port=0, lifecycle_collector=Collector())
"""


def _script_server(tmp_path) -> tuple[Server, object]:
    out = tmp_path / "events.jsonl"
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT.format(repo=str(REPO), out=str(out)))
    srv = Server()
    srv.__class__ = type("ScriptServer", (Server,), {"cmd": property(lambda self: [sys.executable, str(script)])})
    return srv, out


def _events(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_events(path, predicate, timeout=5.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = _events(path)
        if predicate(events):
            return events
        time.sleep(0.05)
    raise AssertionError(f"events not seen: {_events(path)}")


def test_collector_sees_each_step_with_monotonic_timestamps(tmp_path):
    srv, out = _script_server(tmp_path)
    with srv:
        with srv.connect() as c:
            assert c.request("GET", "/plain", headers=[("X-Request-ID", "plain-1")]).status == 200
        with srv.connect() as c:
            sse = c.request("GET", "/sse", headers=[("Accept", "text/event-stream"), ("X-Request-ID", "sse-1")])
            assert sse.chunked
        with srv.connect() as c:
            assert c.request("GET", "/stream", headers=[("X-Request-ID", "stream-1")]).chunked
        with srv.connect() as c:  # a client that leaves mid-body
            c.send(b"POST /read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            time.sleep(0.2)
        events = _wait_events(out, lambda ev: sum(1 for name, _ in ev if name == "ConnectionClosed") >= 4)
    names = [name for name, _ in events]
    assert all(fields.get("frozen") for _, fields in events), "frozen dataclasses, equal to a copy"
    stamps = [fields["t_ns"] for _, fields in events]
    assert stamps == sorted(stamps), "monotonic_ns stamps, in the order things happened"

    def about(rid):
        return [(name, fields.get("where"), fields.get("kind"), fields.get("status"))
                for name, fields in events if fields.get("request_id") == rid]

    assert about("plain-1") == [("RequestStarted", "worker", None, None), ("ResponseCompleted", "worker", None, 200)]
    assert about("sse-1") == [("HandedOff", None, "stream", None), ("RequestStarted", "pool", None, None),
                              ("ResponseCompleted", "pool", None, 200)]
    # A response that turns into a stream in a worker streams from there: one run, no handoff
    assert about("stream-1") == [("RequestStarted", "worker", None, None), ("ResponseCompleted", "worker", None, 200)]
    assert names.count("ConnectionOpened") == 4 and "ClientDisconnected" in names
    plain = next(f for n, f in events if n == "ResponseCompleted" and f["request_id"] == "plain-1")
    assert plain["bytes"] == 2 and 0 < plain["duration_ns"] < 5e9
    opened = next(f for n, f in events if n == "ConnectionOpened")
    assert opened["client"][0] == "127.0.0.1" and opened["server"][1] == srv.port
    # a connection's events share its fd, from opened to closed
    fd = opened["fd"]
    first = [n for n, f in events if f.get("fd") == fd][:4]
    assert first == ["ConnectionOpened", "RequestStarted", "ResponseCompleted", "ConnectionClosed"], first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    out = {}
    for line in body.splitlines():
        m = re.match(r"^(hybrid_\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def test_metrics_port_serves_prometheus_text():
    port = _free_port()
    with Server(OPS, "--port", "0", "--metrics-port", str(port)) as srv:
        with srv.connect() as c:
            for _ in range(3):
                assert c.request("GET", "/plain").status == 200
            assert c.request("GET", "/sse", headers=[("Accept", "text/event-stream")]).chunked
            assert c.request("GET", "/stream").chunked  # streams from its worker (runs once)
            time.sleep(0.1)
            mid = _metrics(port)  # both streams ended; the connection is back with its serving thread
            assert mid["hybrid_streams_open"] == 0 and mid["hybrid_connections_open"] == 1, mid
            assert c.request("GET", "/block").body == b"blocked"  # blocks its thread: a takeover
        with srv.connect() as c:  # leaves mid-body
            c.send(b"POST /read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            time.sleep(0.2)
        time.sleep(0.3)
        m = _metrics(port)
    assert f"Metrics (Prometheus text) on http://127.0.0.1:{port}/metrics" in srv.output
    assert m['hybrid_requests_started_total{where="worker"}'] == 6  # 3 plain, /stream, /block, /read-body
    assert m['hybrid_requests_started_total{where="pool"}'] == 1
    assert not [k for k in m if "pool-rerun" in k or "rerun=" in k], m  # (no request runs twice)
    assert m['hybrid_responses_total{status="2xx",where="worker"}'] == 5
    assert m['hybrid_handoffs_total{kind="stream"}'] == 1
    assert m["hybrid_takeovers_total"] >= 1
    assert m["hybrid_client_disconnects_total"] == 1
    assert m["hybrid_connections_opened_total"] == 2 and m["hybrid_connections_open"] == 0
    assert m['hybrid_request_duration_seconds_count{where="worker"}'] == 5
    # The streams ended (their sockets went back to the serving thread, or closed): nothing left open
    assert m["hybrid_streams_open"] == 0 and m["hybrid_requests_in_flight"] == 0, m


@pytest.mark.parametrize("args, why", [
    (["--metrics-port", "70000"], "between 0 and 65535"),
    (["--metrics-port", "8123", "--port", "8123"], "is also '--port'"),
])
def test_metrics_port_bad_values(args, why):
    rc, out = run_cli(OPS, *(["--port", "0"] if "--port" not in args else []), *args)
    assert rc == 2 and "--metrics-port" in out and why in out and "Traceback" not in out, out


def test_metrics_gauges_follow_streams_websockets_in_flight_and_threads():
    import threading

    import httpx
    from websockets.sync.client import connect as ws_connect

    port = _free_port()

    def wait_metrics(predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            m = _metrics(port)
            if predicate(m) or time.monotonic() > deadline:
                return m
            time.sleep(0.1)

    with Server(OPS, "--port", "0", "--metrics-port", str(port)) as srv:
        m = wait_metrics(lambda m: m.get('hybrid_threads{state="spare"}') == 1)
        assert m['hybrid_threads{state="serving"}'] == 1 and m['hybrid_threads{state="spare"}'] == 1, m
        assert m['hybrid_threads{state="blocked"}'] == 0 and m["hybrid_requests_in_flight"] == 0, m
        assert m["hybrid_blocked_loop_steps_total"] == 0
        sse = socket.create_connection(srv.addr, timeout=5)
        sse.sendall(b"GET /sse-hold HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        got = b""
        while b"data: hello" not in got:
            got += sse.recv(4096)
        with ws_connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
            m = _metrics(port)
            assert m["hybrid_streams_open"] == 1 and m["hybrid_websockets_open"] == 1, m
            assert m["hybrid_requests_in_flight"] == 1, m  # the open stream
            blocked = threading.Thread(target=lambda: httpx.get(srv.url + "/block-long", timeout=10))
            blocked.start()
            m = wait_metrics(lambda m: m.get('hybrid_threads{state="blocked"}') == 1)
            assert m['hybrid_threads{state="blocked"}'] == 1 and m['hybrid_threads{state="serving"}'] == 1, m
            assert m["hybrid_requests_in_flight"] == 2 and m["hybrid_takeovers_total"] >= 1, m
            blocked.join()
        sse.close()
        m = wait_metrics(lambda m: m["hybrid_streams_open"] == 0 and m["hybrid_websockets_open"] == 0
                         and m["hybrid_requests_in_flight"] == 0 and m['hybrid_threads{state="blocked"}'] == 0)
    assert m["hybrid_streams_open"] == 0 and m["hybrid_websockets_open"] == 0, m
    assert m["hybrid_requests_in_flight"] == 0 and m['hybrid_threads{state="blocked"}'] == 0, m


def test_metrics_count_blocked_loop_steps():
    """A step of async code that blocks its loop while other requests wait on it (as in test_correctness)."""
    from .support import block_a_loop_with_requests_waiting

    port = _free_port()
    with Server("tests.apps.correctness:app", "--port", "0", "--no-access-log", "--metrics-port", str(port)) as srv:
        block_a_loop_with_requests_waiting(srv)
        m = _metrics(port)
    assert m["hybrid_blocked_loop_steps_total"] == 1, m


def test_metrics_collector_batches_per_thread_and_a_scrape_sees_every_request_once():
    """One process: request_started/response_completed step each thread's tally; every scrape flushes them
    first. Four threads count while scrapes run alongside: the totals are exact (nothing lost, nothing counted
    twice), and the histogram has every observation in its bucket."""
    import threading

    from prometheus_client import generate_latest

    from hybrid.lifecycle import DURATION_BUCKETS, MetricsCollector

    collector = MetricsCollector()
    assert collector.batched
    per_thread, durations = 3000, [0.0001 * (i % 997) for i in range(3000)]

    def serve(base: int, half: int) -> None:
        for i in range(half * per_thread // 2, (half + 1) * per_thread // 2):
            fd = base + i % 50
            collector.request_started(fd, "worker")
            collector.response_completed(fd, 200 if i % 3 else 404, 10, durations[i], "worker")
            if i % 100 == 0:
                time.sleep(0.0005)  # (let the scrapes in between)

    def scrape() -> dict:
        text = generate_latest(collector.registry).decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line and not line.startswith("#")}

    scrapes = 0
    for half in (0, 1):
        threads = [threading.Thread(target=serve, args=(k * 1000, half)) for k in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            scrape()  # while the threads count
            scrapes += 1
        for t in threads:
            t.join()
        m = scrape()
        assert m['hybrid_requests_started_total{where="worker"}'] == 4 * per_thread * (half + 1) // 2, m
    assert scrapes > 4, scrapes
    assert m['hybrid_responses_total{status="2xx",where="worker"}'] == 4 * 2000
    assert m['hybrid_responses_total{status="4xx",where="worker"}'] == 4 * 1000
    assert m["hybrid_response_body_bytes_total"] == 4 * per_thread * 10
    assert m["hybrid_requests_in_flight"] == 0
    for bound in [*DURATION_BUCKETS, "+Inf"]:  # (cumulative, as Prometheus buckets are)
        le = "+Inf" if bound == "+Inf" else repr(float(bound))
        got = m[f'hybrid_request_duration_seconds_bucket{{le="{le}",where="worker"}}']
        want = sum(1 for s in durations * 4 if bound == "+Inf" or s <= bound)
        assert got == want, (le, got, want)
    assert m['hybrid_request_duration_seconds_sum{where="worker"}'] == pytest.approx(sum(durations) * 4)
    # Only the series that happened: a pool stream answered 503 makes no 2xx pool series.
    collector.request_started(7, "pool")
    collector.response_completed(7, 503, 0, 0.002, "pool")
    m = scrape()
    assert m['hybrid_responses_total{status="5xx",where="pool"}'] == 1
    assert m['hybrid_request_duration_seconds_count{where="pool"}'] == 1
    assert 'hybrid_responses_total{status="2xx",where="pool"}' not in m, m
