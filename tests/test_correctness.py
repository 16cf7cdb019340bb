"""Issue 8: request smuggling through Upgrade, 1xx to HTTP/1.0, connections queued at shutdown, app objects with
worker processes, the body limit, an app error after a complete response, and the spare-thread race.

Each test drives a real server process over loopback sockets (tests/apps/correctness.py counts how often each path
ran), except the spare race, which is a scheduling interleaving that a test can only force in-process.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support import RawClient, Server, block_a_loop_with_requests_waiting, build_request, chunked

APP = "tests.apps.correctness:app"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        yield srv


def calls(client: RawClient) -> dict:
    resp = client.request("GET", "/calls")
    assert resp.status == 200
    return json.loads(resp.body)


# -- 1. Upgrade must not switch framing unless the server performs the upgrade (RFC 9110 section 7.8) ----------

SMUGGLED = b"GET /smuggled-path HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_declined_upgrade_keeps_http_framing(server, framing):
    """A body sent with Connection: Upgrade is that request's body, never a second request."""
    headers = [("Connection", "Upgrade"), ("Upgrade", "foo")]
    if framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        body = chunked(SMUGGLED[:20], SMUGGLED[20:])
    else:
        body = SMUGGLED
    with server.connect() as c:
        c.send(build_request("POST", "/upload", headers, body))
        resp = c.read_response()
        assert resp.status == 200
        assert resp.body == b"POST /upload body=%d:%s" % (len(SMUGGLED), SMUGGLED), "the app must get the body"
        # The connection is still HTTP and in sync: the next response is the one to the next request.
        counted = calls(c)
    assert counted.get("/upload") == 1
    assert "/smuggled-path" not in counted, f"the body was served as a request: {counted}"


def test_declined_upgrade_without_body_serves_the_next_pipelined_request(server):
    with server.connect() as c:
        c.send(build_request("GET", "/first", [("Connection", "Upgrade"), ("Upgrade", "h2c")])
               + build_request("GET", "/second"))
        assert c.read_response().body == b"GET /first body=0:"
        assert c.read_response().body == b"GET /second body=0:"


# -- 2. No 1xx to an HTTP/1.0 client (RFC 9110 sections 10.1.1 and 15.2) ---------------------------------------


def _expect_continue(server, version: str):
    head = (f"POST /upload {version}\r\nHost: localhost\r\nExpect: 100-continue\r\n"
            "Content-Length: 5\r\n\r\n").encode()
    c = server.connect()
    c.send(head)
    c.sock.settimeout(0.5)
    try:
        early = c.sock.recv(65536)  # the app reads the body at once: an interim answer would come now
    except TimeoutError:
        early = b""
    c.sock.settimeout(5)
    c.send(b"hello")
    return c, early


def test_no_100_continue_to_http10(server):
    c, early = _expect_continue(server, "HTTP/1.0")
    with c:
        assert early == b"", f"an HTTP/1.0 client got {early!r}"
        resp = c.read_response()
    assert resp.status == 200 and resp.body == b"POST /upload body=5:hello"


def test_100_continue_to_http11(server):
    c, early = _expect_continue(server, "HTTP/1.1")
    with c:
        assert early == b"HTTP/1.1 100 Continue\r\n\r\n"
        resp = c.read_response()
    assert resp.status == 200 and resp.body == b"POST /upload body=5:hello"


# -- 3. Connections queued in the kernel at SIGTERM are accepted and answered ------------------------------------


def test_sigterm_answers_connections_queued_in_the_kernel():
    """One serving thread and no spare (--max-threads 1): while it sleeps in a handler, new connections can only
    queue in the kernel. SIGTERM arrives then: each queued client still gets its response, with connection: close."""
    with Server(APP, "--port", "0", "--no-access-log", "--max-threads", "1") as srv:
        blocker = srv.connect(timeout=10)
        blocker.send(build_request("GET", "/block?t=0.8"))
        time.sleep(0.2)  # the handler is asleep now, holding the only thread
        queued = []
        for i in range(5):
            c = srv.connect(timeout=10)
            c.send(build_request("GET", f"/queued-{i}"))
            queued.append(c)
        srv.signal(signal.SIGTERM)
        assert blocker.read_response().body == b"blocked"
        for i, c in enumerate(queued):
            resp = c.read_response()
            assert resp.status == 200 and resp.body == f"GET /queued-{i} body=0:".encode()
            assert resp.header("connection") == "close"
            c.close()
        blocker.close()
        assert srv.wait(10) == 0, srv.output


# -- 4. An app object cannot be sent to worker processes ---------------------------------------------------------


@pytest.mark.parametrize("options", [{"workers": 2}, {"reload": True}, {"limit_max_requests": 10}])
def test_run_refuses_an_app_object_with_worker_processes(options):
    """Workers import the app themselves; an object would be replaced by whatever '__main__:app' is there."""
    code = (
        "import hybrid\n"
        "async def app(scope, receive, send): pass\n"
        f"hybrid.run(app, port=0, **{options!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "pass the app as 'MODULE:ATTRIBUTE'" in proc.stderr, proc.stderr
    assert "Listening" not in proc.stderr + proc.stdout


# -- 5. --limit-request-body -------------------------------------------------------------------------------------


@pytest.fixture
def limited():
    with Server(APP, "--port", "0", "--no-access-log", "--limit-request-body", "10") as srv:
        yield srv


def test_body_limit_refuses_a_large_content_length_before_reading(limited):
    with limited.connect() as c:
        # Only the head is sent, with Expect: the answer must come without the body and without 100 Continue.
        c.send(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 413
        assert resp.header("connection") == "close"
        assert c.closed_by_peer()
    with limited.connect() as c:
        assert calls(c).get("/upload") is None, "the app must not run for a refused body"


def test_body_limit_cuts_a_chunked_body(limited):
    with limited.connect() as c:
        c.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")], chunked(b"123456", b"78901")))
        resp = c.read_response()
        assert resp.status == 413 and resp.header("connection") == "close"


def test_body_at_the_limit_is_served(limited):
    with limited.connect() as c:
        assert c.request("POST", "/upload", body=b"0123456789").body == b"POST /upload body=10:0123456789"


def test_limit_request_body_rejects_a_negative_value():
    from tests.support import run_cli

    rc, out = run_cli(APP, "--limit-request-body", "-1")
    assert rc == 2 and "--limit-request-body" in out


# -- 6. An exception after the complete response ----------------------------------------------------------------


def test_error_after_complete_response_is_logged_and_the_connection_stays_usable(server):
    """Decided: the response went out whole and framed, so the connection carries on (Starlette's error
    middleware sends its 500 and then re-raises: closing would reset clients that already sent their next
    request); the exception is logged."""
    with server.connect() as c:
        c.send(build_request("GET", "/error-after-complete") + build_request("POST", "/next", body=b"abc"))
        resp = c.read_response()
        assert resp.status == 200 and resp.body == b"complete body"
        assert resp.header("connection") is None
        nxt = c.read_response()
        assert nxt.status == 200 and nxt.body == b"POST /next body=3:abc"
    deadline = time.monotonic() + 5
    while "raised after the complete response" not in server.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Exception in ASGI application" in server.output
    assert "raised after the complete response" in server.output


# -- 7. The chain of takeovers never waits on a handler ----------------------------------------------------------


def test_a_spare_handed_a_set_while_starting_is_replaced(monkeypatch):
    """The race of issue 8: a new spare is given a set the instant it registers, while its starter still counts
    it as starting. Once the starter finishes, another spare must be started; otherwise the next takeover waits
    until a blocked handler returns."""
    import hybrid.sync_worker
    from hybrid.config import ServerConfig
    from hybrid.monitor import ThreadManager

    class FakeServer:
        draining = False

    manager = ThreadManager(FakeServer(), ServerConfig(app=APP, max_threads=8))
    created = []

    class FakeWorker:
        def __init__(self, server, name):
            self.ready = threading.Event()
            self.startup_error = None
            created.append(self)

        def start(self):
            if len(created) == 1:
                # Registered and taken over at once (slot ACTIVE), then tells the manager, as _on_wake does,
                # before its starter has seen it ready.
                manager.monitor.add_slot(-1, 99)
                manager.ensure_spare()
            else:
                manager.monitor.add_slot(-1)  # an ordinary spare
            self.ready.set()

    monkeypatch.setattr(hybrid.sync_worker, "SyncWorker", FakeWorker)
    manager.ensure_spare()
    deadline = time.monotonic() + 3
    while manager.monitor.spare_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert manager.monitor.spare_count() == 1, f"no spare ready or starting after {len(created)} start(s)"
    assert len(created) == 2


def _burn(seconds: float) -> subprocess.Popen:
    # A busy neighbour: production hosts have them. It ends by itself.
    return subprocess.Popen([sys.executable, "-c", f"import time\nend = time.time() + {seconds}\n"
                             "while time.time() < end: pass\n"])


@pytest.mark.timeout(90)
def test_isolation_with_a_busy_neighbour():
    """8 handlers sleep 1 s while fast requests keep coming, on a fresh server each time, with another process
    keeping a core busy: no fast request waits for a sleeper (measured from the moment the sleepers start)."""
    worst = []
    for _ in range(3):
        burner = _burn(8)
        try:
            with Server(APP, "--port", "0", "--no-access-log") as srv:
                sleepers = []
                for _ in range(8):
                    c = RawClient(srv.addr, timeout=10)
                    sleepers.append(c)
                for c in sleepers:
                    c.send(build_request("GET", "/block?t=1"))
                latencies = []
                with srv.connect(timeout=10) as fast:
                    end = time.monotonic() + 0.9
                    while time.monotonic() < end:
                        t0 = time.perf_counter()
                        assert fast.request("GET", "/fast").status == 200
                        latencies.append(time.perf_counter() - t0)
                for c in sleepers:
                    assert c.read_response().body == b"blocked"
                    c.close()
                worst.append(max(latencies))
        finally:
            burner.kill()
            burner.wait()
    assert max(worst) < 0.25, f"a fast request waited {max(worst) * 1000:.0f} ms (worst per run: {worst})"



# -- Issue 9: a step that blocks a loop holding other requests is reported, once per route --------------------


def _warnings(srv: Server, route: str) -> list[str]:
    return [line for line in srv.output.splitlines() if line.startswith("WARNING") and route in line
            and "blocked the event loop" in line]


def _wait_for_output(srv: Server, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in srv.output and time.monotonic() < deadline:
        time.sleep(0.05)


def test_blocked_worker_loop_is_reported_once_per_route_with_its_numbers():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        for _ in range(2):
            block_a_loop_with_requests_waiting(srv)
        _wait_for_output(srv, "blocked the event loop")
        lines = _warnings(srv, "GET /await-then-block")
        assert len(lines) == 1, srv.output
        m = re.search(r"of (hybrid-worker-\d+) for (\d+) ms while (\d+) other request", lines[0])
        assert m, lines[0]
        assert 290 <= int(m.group(2)) < 1000 and int(m.group(3)) == 3, lines[0]
        assert srv.stop() == 0
    assert re.search(r"; 2 blocked-loop steps", srv.output), srv.output


def test_blocked_pool_loop_is_reported_naming_the_route():
    sse = [("Accept", "text/event-stream")]
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with srv.connect(timeout=10) as stream:
            stream.send(build_request("GET", "/ticks", sse))
            assert stream.read_head().status == 200
            with srv.connect(timeout=10) as c:
                c.send(build_request("GET", "/await-then-block?t=0.3", sse))
                resp = c.read_response()
                assert resp.status == 200 and b"data: blocked" in resp.body
        _wait_for_output(srv, "blocked the event loop")
        lines = _warnings(srv, "GET /await-then-block")
        assert len(lines) == 1, srv.output
        m = re.search(r"of the async pool for (\d+) ms while (\d+) other request", lines[0])
        assert m and 290 <= int(m.group(1)) < 1000 and int(m.group(2)) >= 1, lines[0]
