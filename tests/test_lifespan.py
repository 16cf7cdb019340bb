"""Lifespan: auto/on/off, startup failure, shutdown on SIGTERM, state."""

import signal
import threading
import time

import httpx
import pytest

from .support import RawClient, Server, build_request, run_cli

pytestmark = pytest.mark.timeout(40)

BASIC = "tests.apps.basic:app"
FAILED = "tests.apps.lifespan_failed:app"
RAISE = "tests.apps.lifespan_raise:app"

from .apps.lifespan_failed import MESSAGE as FAILED_MESSAGE  # noqa: E402
from .apps.lifespan_raise import MESSAGE as RAISE_MESSAGE  # noqa: E402


def lifespan_log(path):
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_and_shutdown_run(tmp_path, mode):
    log = tmp_path / "lifespan.log"
    srv = Server(BASIC, "--port", "0", "--lifespan", mode, env={"HYBRID_TEST_LIFESPAN_LOG": str(log)})
    with srv:
        events = lifespan_log(log)
        assert events.count("startup") >= 1, "lifespan startup must complete before 'Listening on'"
        assert "shutdown" not in events
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            info = c.get("/lifespan").json()
            assert info["startup"] >= 1
            assert c.get("/scope").json()["state"]["started"] is True
        rc = srv.stop()
    assert rc == 0, srv.output
    events = lifespan_log(log)
    assert events.count("startup") >= 1
    assert events.count("shutdown") == events.count("startup"), events
    assert events.index("shutdown") > max(i for i, e in enumerate(events) if e == "startup")


def test_lifespan_off_never_calls_lifespan(tmp_path):
    log = tmp_path / "lifespan.log"
    srv = Server(BASIC, "--port", "0", "--lifespan", "off", env={"HYBRID_TEST_LIFESPAN_LOG": str(log)})
    with srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            assert c.get("/lifespan").json()["startup"] == 0
            state = c.get("/scope").json()["state"]
            assert "started" not in (state if isinstance(state, dict) else {})
        assert srv.stop() == 0
    assert lifespan_log(log) == []


def test_startup_failed_message_exits_nonzero():
    rc, out = run_cli(FAILED, "--port", "0", "--lifespan", "on")
    assert rc == 3, out
    assert FAILED_MESSAGE in out
    assert "Listening on" not in out


def test_startup_failed_in_auto_mode_also_exits():
    rc, out = run_cli(FAILED, "--port", "0", "--lifespan", "auto")
    assert rc == 3, out
    assert FAILED_MESSAGE in out


def test_startup_raises_with_lifespan_on_exits_nonzero():
    rc, out = run_cli(RAISE, "--port", "0", "--lifespan", "on")
    assert rc == 3, out
    assert RAISE_MESSAGE in out


def test_startup_raises_with_lifespan_auto_continues():
    with Server(RAISE, "--port", "0", "--lifespan", "auto") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            r = c.get("/")
            assert r.status_code == 200 and r.text == "served without lifespan"
        assert srv.stop() == 0


def test_startup_raises_with_lifespan_off():
    with Server(RAISE, "--port", "0", "--lifespan", "off") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            r = c.get("/")
            assert r.status_code == 200 and r.text == "served without lifespan"
        assert srv.stop() == 0
    assert RAISE_MESSAGE not in srv.output


def test_graceful_shutdown_finishes_in_flight_request(tmp_path):
    log = tmp_path / "lifespan.log"
    srv = Server(BASIC, "--port", "0", env={"HYBRID_TEST_LIFESPAN_LOG": str(log)})
    with srv:
        # Connected and sent before SIGTERM (a client thread could still be connecting on a loaded machine,
        # then meet the closed listener: a refused connection the server never saw, not what this tests).
        with RawClient(srv.addr, timeout=10) as client:
            client.send(build_request("GET", "/asleep?t=1"))
            time.sleep(0.3)
            srv.signal(signal.SIGTERM)
            resp = client.read_response()
        rc = srv.wait(10)
        assert rc == 0, srv.output
    assert (resp.status, resp.body) == (200, b"aslept"), resp
    events = lifespan_log(log)
    assert events.count("shutdown") == events.count("startup") >= 1


def test_graceful_shutdown_finishes_blocking_request():
    with Server(BASIC, "--port", "0") as srv:
        result = {}

        def slow():
            try:
                with httpx.Client(base_url=srv.url, timeout=10) as c:
                    r = c.get("/sleep?t=1")
                    result["status"], result["body"] = r.status_code, r.text
            except Exception as exc:  # noqa: BLE001
                result["error"] = repr(exc)

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        t.join(10)
        assert srv.wait(10) == 0, srv.output
    assert result.get("status") == 200 and result.get("body") == "slept", result


def test_shutdown_stops_accepting_and_closes_idle(tmp_path):
    """After SIGTERM, while an in-flight request keeps the server draining (once it has exited, both would hold
    anyway): the idle keep-alive connection is closed by the server, and a new connection is refused."""
    import socket

    with Server(BASIC, "--port", "0") as srv:
        idle = srv.connect()
        r = idle.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")
        busy = srv.connect(timeout=10)
        busy.send(build_request("GET", "/asleep?t=1"))
        time.sleep(0.2)  # the request is in the app now
        srv.signal(signal.SIGTERM)
        assert idle.closed_by_peer(0.8), "idle keep-alive connection not closed within 0.8 s of SIGTERM"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(srv.addr, timeout=1).close()
        assert srv.alive(), "the server must still be draining the in-flight request"
        r = busy.read_response()
        assert (r.status, r.body) == (200, b"aslept") and r.header("connection") == "close", r
        assert srv.wait(10) == 0, srv.output
        idle.close()
        busy.close()


def test_sigterm_right_after_ready_is_graceful():
    """SIGTERM as soon as 'Listening on' is printed: handled (exit 0, quickly), never the default action."""
    for _ in range(15):
        with Server(BASIC, "--port", "0") as srv:
            t0 = time.monotonic()
            rc = srv.stop()
            assert rc == 0, f"exit {rc}: SIGTERM right after the ready line was not handled\n{srv.output}"
            assert time.monotonic() - t0 < 5


def test_lifespan_state_in_fastapi():
    with Server("tests.apps.fastapi_app:app", "--port", "0") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            assert c.get("/state").json() == {"db": "connected"}
        assert srv.stop() == 0


def test_sigint_is_graceful_too(tmp_path):
    log = tmp_path / "lifespan.log"
    with Server(BASIC, "--port", "0", env={"HYBRID_TEST_LIFESPAN_LOG": str(log)}) as srv:
        assert httpx.get(srv.url + "/", timeout=5).status_code == 200
        srv.signal(signal.SIGINT)
        assert srv.wait(10) == 0, srv.output
    assert lifespan_log(log).count("shutdown") >= 1


def test_lifespan_runs_in_every_worker_loop():
    """Lifespan runs in every event loop that runs app code: at least one per --threads worker."""
    with Server(BASIC, "--port", "0", "--threads", "3") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            info = c.get("/lifespan").json()
        assert info["startup"] >= 3, info
        assert len(set(info["loops"])) == info["startup"], "one startup per distinct loop"
        assert srv.stop() == 0
