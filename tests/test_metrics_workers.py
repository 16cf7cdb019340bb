"""--metrics-port with --workers N: one endpoint, the supervisor's, whose numbers cover every worker process.

Real servers (``python -m hybrid ... --workers 2 --metrics-port P``), real clients (httpx), real scrapes.
"""

import os
import re
import signal
import socket
import time

import httpx
import pytest

from .apps.sup_support import worker_pids
from .support import Server, run_cli

pytestmark = pytest.mark.timeout(90)

OPS = "tests.apps.ops:app"
WORKER_2XX = 'hybrid_responses_total{status="2xx",where="worker"}'
STARTED = 'hybrid_requests_started_total{where="worker"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    out = {}
    for line in response.text.splitlines():
        m = re.match(r"^(hybrid_\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def pids_of_requests(srv: Server, at_least: int, workers: set[int], limit: int = 400) -> list[int]:
    """One request per new connection (httpx.get), until ``at_least`` were sent and every worker in ``workers``
    answered one; returns the pid that answered each."""
    answered = []
    while len(answered) < at_least or not workers <= set(answered):
        assert len(answered) < limit, f"workers {workers} not all reached in {limit} requests: {set(answered)}"
        response = httpx.get(f"{srv.url}/pid", timeout=5)
        assert response.status_code == 200
        answered.append(int(response.text))
    return answered


def held_connection(srv: Server, pid: int, limit: int = 200) -> httpx.Client:
    """A keep-alive connection served by worker ``pid``, left open; also returns how many requests it took."""
    for _ in range(limit):
        client = httpx.Client(base_url=srv.url, timeout=5)
        response = client.get("/pid")
        held_connection.sent += 1
        if int(response.text) == pid:
            return client
        client.close()
    raise AssertionError(f"no connection reached worker {pid}")


held_connection.sent = 0


def test_metrics_cover_all_workers_and_survive_a_restart(tmp_path):
    port = free_port()
    env = {"TMPDIR": str(tmp_path)}  # where the supervisor makes its per-run metrics directory
    with Server(OPS, "--port", "0", "--workers", "2", "--metrics-port", port, env=env) as srv:
        workers = wait_for(lambda: len(worker_pids(srv)) == 2 and worker_pids(srv))
        assert workers, srv.output
        assert f"Metrics (Prometheus text) on http://127.0.0.1:{port}/metrics, for all workers" in srv.output
        (metrics_dir,) = tmp_path.glob("hybrid-metrics-*")

        answered = pids_of_requests(srv, 40, workers)
        n = len(answered)
        assert set(answered) == workers, "both workers answered"
        m = wait_for(lambda: (lambda m: m.get(WORKER_2XX) == n and m)(scrape(port)), 5) or scrape(port)
        assert m[WORKER_2XX] == n, f"sent {n} requests ({answered.count(min(workers))} to one worker), {m}"
        assert m[STARTED] == n
        assert m['hybrid_request_duration_seconds_count{where="worker"}'] == n
        assert m["hybrid_connections_opened_total"] == n
        assert wait_for(lambda: scrape(port)["hybrid_connections_open"] == 0, 5)
        serving = 'hybrid_threads{state="serving"}'
        assert wait_for(lambda: scrape(port).get(serving) == 2, 5), f"one serving thread per worker: {scrape(port)}"

        # One open connection on each worker; then worker `victim` is killed and replaced.
        victim, survivor = sorted(workers)
        held_connection.sent = 0
        on_victim = held_connection(srv, victim)
        on_survivor = held_connection(srv, survivor)
        n += held_connection.sent
        m = scrape(port)
        assert m["hybrid_connections_open"] == 2 and m[WORKER_2XX] == n, m
        os.kill(victim, signal.SIGKILL)
        now = wait_for(lambda: (lambda w: len(w) == 2 and victim not in w and w)(worker_pids(srv)), 15)
        assert now, f"worker {victim} not replaced:\n{srv.output[-3000:]}"
        (replacement,) = now - workers
        m = scrape(port)
        # The dead worker's counts stay in the totals, once; its open connection no longer counts.
        assert m[WORKER_2XX] == n and m[STARTED] == n, m
        assert m["hybrid_connections_open"] == 1, m
        # (the replacement samples its threads within half a second; the dead worker's gauges are gone)
        assert wait_for(lambda: scrape(port).get(serving) == 2, 5), scrape(port)

        more = pids_of_requests(srv, 20, {survivor, replacement})
        assert on_survivor.get("/pid").text == str(survivor)
        n += len(more) + 1
        m = scrape(port)
        assert m[WORKER_2XX] == n and m[STARTED] == n, f"expected {n}: {m}"
        on_victim.close()
        on_survivor.close()
        assert wait_for(lambda: scrape(port)["hybrid_connections_open"] == 0, 5)
        assert metrics_dir.is_dir()
    assert srv.returncode == 0, srv.output[-3000:]
    assert not metrics_dir.exists(), "the supervisor removes its metrics directory at exit"


def test_metrics_port_taken_with_workers_is_a_startup_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, out = run_cli(OPS, "--port", "0", "--workers", "2", "--metrics-port", str(port))
    assert rc == 3 and f"Cannot serve metrics on 127.0.0.1:{port}" in out and "Traceback" not in out, out
    assert "Started worker process" not in out, "no worker starts when the metrics endpoint cannot"


def test_metrics_port_equal_to_port_is_refused():
    rc, out = run_cli(OPS, "--port", "8123", "--workers", "2", "--metrics-port", "8123")
    assert rc == 2 and "Invalid value for '--metrics-port'" in out and "is also '--port'" in out, out
