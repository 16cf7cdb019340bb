"""SIGTERM / SIGINT: graceful shutdown of a single process and of a supervisor with 2 workers (issue 4).

Real server processes (tests/apps/sup_app.py) driven by concurrent raw-socket clients; servers are stopped by PID
and their process group is SIGKILLed at teardown (see tests/apps/sup_support.py).
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from hybrid.shutdown import EXIT_CUT_SHORT
from tests.apps.sup_support import (
    ANSWERED,
    APP,
    Load,
    RawClient,
    assert_no_orphans,
    entered,
    entered_pid,
    is_running,
    launcher,
    lifespan_loops,
    parse_pid,
    request_bytes,
    wait_for,
    worker_pids,
)


@pytest.fixture
def launch(tmp_path):
    yield from launcher(tmp_path)


MODES = [pytest.param([], id="single"), pytest.param(["--workers", "2"], id="workers2")]


def _server(launch, mode, *extra):
    srv = launch(APP, "--port", "0", "--no-access-log", *mode, *extra)
    if mode:
        assert wait_for(lambda: len(worker_pids(srv)) == 2, 5), f"2 workers expected:\n{srv.output}"
    return srv


class SlowRequest(threading.Thread):
    """One keep-alive request to /slow on its own connection, read to the end in a thread."""

    def __init__(self, srv, rid: str, t: float, client: RawClient | None = None):
        super().__init__(daemon=True)
        self.client = client or RawClient(srv.addr, timeout=t + 15)
        self.rid = rid
        self.target = f"/slow?t={t}&id={rid}"
        self.resp = None
        self.error = None

    def run(self):
        try:
            self.client.send(request_bytes(self.target, close=False))
            self.resp = self.client.read_response("GET")
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.client.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
def test_sigterm_under_load_is_graceful(launch, mode):
    """SIGTERM during steady load, fresh connections and keep-alive ones: every request whose connection was
    established is answered (200 with its own id); the only other outcome allowed is a refused connect() once the
    listener is closed. Keep-alive clients get their last response with connection: close. Slow in-flight requests
    finish (with connection: close), lifespan shutdown runs in every loop that started, exit 0 in time."""
    srv = _server(launch, mode, "--timeout-graceful-shutdown", "10")
    workers = worker_pids(srv)
    fresh = Load(srv.addr, threads=2, tag="F").start()
    kept = Load(srv.addr, threads=2, keepalive=True, pace=0.005, tag="K").start()  # idle 5 ms between requests
    time.sleep(0.5)
    slow = [SlowRequest(srv, f"slow{i}", 1.0) for i in range(3)]
    for s in slow:
        s.start()
    assert wait_for(lambda: all(entered(srv.markers, f"slow{i}") for i in range(3)), 5), "slow requests not started"
    t_sig = time.monotonic()
    srv.signal(signal.SIGTERM)
    rc = srv.wait(20)
    elapsed = time.monotonic() - t_sig
    fresh.stop()
    kept.stop()
    print("fresh:", fresh.summary())
    print("keep-alive:", kept.summary())
    for s in slow:
        s.join(5)
    assert rc == 0, f"exit code {rc} after SIGTERM:\n{srv.output[-3000:]}"
    assert elapsed < 1.0 + 5, f"took {elapsed:.1f} s to exit after SIGTERM"

    for s in slow:
        assert s.error is None, f"in-flight slow request failed: {s.error!r}"
        assert s.resp.status == 200 and s.resp.body.endswith(s.rid.encode() + b" slow-done"), s.resp
        assert (s.resp.header("connection") or "").lower() == "close", (
            f"in-flight response during shutdown should say connection: close, got {s.resp.headers}"
        )

    for load in (fresh, kept):
        # A refusal is a defect when connect() was refused before the signal was sent. One that began before the
        # signal but returned after it is not: on a loaded 2-core machine the client thread can be descheduled
        # between taking t0 and its SYN, which then reaches a listener the signal has closed (CI saw an 8 ms gap).
        early = [r for r in load.refused if r.t1 < t_sig]
        assert not early, (
            f"refused before the signal ({early[0].rid} refused {t_sig - early[0].t1:.4f} s before it): "
            + load.summary()
        )
        before = [r for r in load.records if r.t1 < t_sig]
        assert len(before) > 20 and all(r.kind == ANSWERED for r in before), "before the signal: " + load.summary()
    assert sum(r.reused for r in kept.answered) > 20, "keep-alive connections were not reused: " + kept.summary()

    started = lifespan_loops(srv.markers, "startup")
    shut = lifespan_loops(srv.markers, "shutdown")
    assert started, "lifespan startup never ran"
    assert started <= shut, f"lifespan shutdown missing in (pid, thread) {sorted(started - shut)}"
    if mode:
        assert {pid for pid, _ in started} >= workers
        assert_no_orphans(srv)
    # Each keep-alive client's connection was ended by the server's "connection: close", not cut.
    assert len({r.rid.split("-")[0] for r in kept.answered if r.closes}) == kept.n, (
        "keep-alive clients whose connection the server did not end with connection: close: " + kept.summary()
    )
    for load in (fresh, kept):
        load.assert_none_lost("SIGTERM")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
def test_graceful_timeout_cuts_off_hanging_handler(launch, mode):
    """A handler that never returns does not keep the process alive past --timeout-graceful-shutdown, but it does
    get that long: its connection stays open until then, and is closed without a byte of (partial) response. The
    exit code says the shutdown was cut short (4), for a supervisor too."""
    srv = _server(launch, mode, "--timeout-graceful-shutdown", "2")
    client = RawClient(srv.addr, timeout=15)
    client.send(request_bytes("/hang?id=hang", close=False))
    assert wait_for(lambda: entered(srv.markers, "hang"), 5), "hang request did not reach the app"
    t_sig = time.monotonic()
    srv.signal(signal.SIGTERM)
    # Checked while the server still runs: the in-flight request is not cut before the graceful timeout.
    closed_early = client.closed_by_peer(1.2)
    assert srv.alive(), f"exited {time.monotonic() - t_sig:.1f} s after SIGTERM, before the 2 s graceful timeout"
    assert not closed_early, "the hanging request's connection was closed before --timeout-graceful-shutdown"
    rc = srv.wait(2 + 5)
    elapsed = time.monotonic() - t_sig
    assert rc is not None, (
        f"still running {elapsed:.1f} s after SIGTERM with --timeout-graceful-shutdown 2:\n{srv.output[-3000:]}"
    )
    assert rc == EXIT_CUT_SHORT, f"exit code {rc}, not {EXIT_CUT_SHORT} (cut short):\n{srv.output[-3000:]}"
    # The request gets the bound less the lifespan's reserve (a quarter of 2 s), and the whole exit fits in the bound.
    assert 1.5 - 0.1 <= elapsed < 2 + 0.75, f"exited {elapsed:.1f} s after SIGTERM with --timeout-graceful-shutdown 2"
    client.sock.settimeout(1)
    assert client.read_to_eof() == b"", "the cut-off request must get no partial response"
    client.close()
    if mode:
        assert_no_orphans(srv)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
def test_second_sigint_exits_immediately(launch, mode):
    """First SIGINT starts a graceful shutdown (waiting for a hanging handler, no timeout); a second one exits now."""
    srv = _server(launch, mode)
    client = RawClient(srv.addr, timeout=15)
    client.send(request_bytes("/hang?id=hang", close=False))
    assert wait_for(lambda: entered(srv.markers, "hang"), 5), "hang request did not reach the app"
    srv.signal(signal.SIGINT)
    time.sleep(1.0)
    assert srv.alive(), f"exited on the first SIGINT although a request was in flight:\n{srv.output[-3000:]}"
    t = time.monotonic()
    srv.signal(signal.SIGINT)
    rc = srv.wait(3)
    assert rc is not None, f"second SIGINT did not exit within 3 s:\n{srv.output[-3000:]}"
    assert time.monotonic() - t < 3
    client.close()
    # An immediate exit of the supervisor must not leave its workers running.
    assert_no_orphans(srv)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
def test_idle_keepalive_connections_do_not_delay_shutdown(launch, mode):
    """Idle keep-alive connections are closed by the server soon after SIGTERM, while it still drains in-flight
    requests (so the close is the server's doing, not the process exit); the process then exits 0 as soon as the
    in-flight requests are done, without waiting for --timeout-keep-alive."""
    srv = _server(launch, mode, "--timeout-keep-alive", "30")
    # Which worker accepts a connection is the kernel's choice (one shared listening socket), and it may favour one
    # process for a long time. So the slow requests travel on connections already known to be in each process: per
    # process, the first connection carries a slow request and the others stay idle.
    by_pid: dict[int, list[RawClient]] = {}
    for i in range(8):
        c = RawClient(srv.addr, timeout=20)
        resp = c.request("GET", f"/?id=idle{i}")
        assert resp.status == 200 and resp.body.endswith(f" id=idle{i}".encode()), resp
        assert (resp.header("connection") or "").lower() != "close", resp.headers
        by_pid.setdefault(parse_pid(resp.body), []).append(c)
    busy = 1.0
    slow, clients = [], []
    for pid, conns in by_pid.items():
        s = SlowRequest(srv, f"busy{pid}", busy, client=conns[0])
        s.start()
        slow.append(s)
        reached = wait_for(lambda s=s, pid=pid: entered_pid(srv.markers, s.rid) == pid, 5)
        assert reached, f"slow request did not reach the app in process {pid}"
        clients += [(c, pid) for c in conns[1:]]
    assert len(clients) >= 4, by_pid
    t = time.monotonic()
    srv.signal(signal.SIGTERM)
    for c, pid in clients:
        assert c.closed_by_peer(max(0.1, t + 0.8 - time.monotonic())), (
            f"idle keep-alive connection (process {pid}) not closed within 0.8 s of SIGTERM"
        )
        assert is_running(pid), f"process {pid} exited before the idle connection was closed: not a graceful close"
        c.close()
    assert srv.alive(), "the server must still be draining the slow requests"
    rc = srv.wait(10)
    elapsed = time.monotonic() - t
    assert rc == 0, f"exit code {rc}:\n{srv.output[-3000:]}"
    assert elapsed < busy + 1.5, f"exit took {elapsed:.1f} s with idle keep-alive connections open"
    for s in slow:
        s.join(5)
        assert s.error is None and s.resp.status == 200 and s.resp.body.endswith(b"slow-done"), (s.error, s.resp)
        assert (s.resp.header("connection") or "").lower() == "close", s.resp.headers
    if mode:
        assert_no_orphans(srv)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
def test_stops_accepting_while_draining(launch, mode):
    """After SIGTERM, while an in-flight request is still running, a new connection is refused: it does not wait in
    a queue nobody serves, nor is it accepted and then dropped. The in-flight request still completes."""
    srv = _server(launch, mode, "--timeout-graceful-shutdown", "10")
    slow = SlowRequest(srv, "drain", 1.5)
    slow.start()
    assert wait_for(lambda: entered(srv.markers, "drain"), 5)
    srv.signal(signal.SIGTERM)
    time.sleep(0.5)
    t = time.monotonic()
    outcome = None
    try:
        sock = socket.create_connection(srv.addr, timeout=2)
    except ConnectionRefusedError:
        outcome = "refused"
    else:
        with sock:
            sock.settimeout(1.0)
            try:
                sock.sendall(request_bytes("/", close=True))
                data = sock.recv(65536)
                outcome = f"served {data[:100]!r}" if data else "accepted, then closed without a response"
            except ConnectionResetError:
                outcome = "accepted, then reset"
            except TimeoutError:
                outcome = "waiting"
    assert srv.alive(), "the server must still be draining the slow request"
    assert outcome == "refused", (
        f"new connection 0.5 s into the drain: {outcome} after {time.monotonic() - t:.1f} s (expected refused)"
    )
    slow.join(10)
    assert slow.error is None and slow.resp is not None, slow.error
    assert slow.resp.status == 200 and slow.resp.body.endswith(b"id=drain slow-done"), slow.resp
    assert (slow.resp.header("connection") or "").lower() == "close", slow.resp.headers
    rc = srv.wait(10)
    assert rc == 0, f"exit code {rc}:\n{srv.output[-3000:]}"


@pytest.mark.timeout(30)
def test_sighup_in_single_process_mode_is_logged_not_fatal(launch):
    """Without a supervisor there is nothing to swap: SIGHUP must not kill the server (its default action)."""
    import os

    from tests.apps.sup_support import one_request

    srv = _server(launch, [])
    os.kill(srv.pid, signal.SIGHUP)
    assert wait_for(lambda: "SIGHUP ignored" in srv.output, 5), srv.output
    rec = one_request(srv.addr, "/?id=after-hup")
    assert rec.kind == ANSWERED and rec.pid == srv.pid, f"{rec.kind} {rec.detail}\n{srv.output}"
    assert srv.stop() == 0
