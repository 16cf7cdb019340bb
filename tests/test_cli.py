"""Command line: app loading, listeners (TCP v4/v6, --uds, --fd), header flags, invalid values."""

import os
import socket
import sys
import time

import httpx
import pytest

from .support import REPO, TESTS, ScriptRun, Server, has_ipv6, run_cli

pytestmark = pytest.mark.timeout(40)

BASIC = "tests.apps.basic:app"


# ---------------------------------------------------------------------------------------------------------
# Invalid values: exit 2 with a one-line error naming the option
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, option",
    [
        (["--port", "-1"], "port"),
        (["--port", "70000"], "port"),
        (["--port", "abc"], "port"),
        (["--threads", "0"], "threads"),
        (["--threads", "-3"], "threads"),
        (["--threads", "many"], "threads"),
        (["--lifespan", "maybe"], "lifespan"),
        (["--blocking-threshold", "-1"], "blocking-threshold"),
        (["--blocking-threshold", "soon"], "blocking-threshold"),
        (["--threads", "4", "--max-threads", "2"], "max-threads"),
        (["--backlog", "abc"], "backlog"),
        (["--timeout-keep-alive", "-1"], "timeout-keep-alive"),
        (["--timeout-request-head", "0"], "timeout-request-head"),
        (["--log-level", "loud"], "log-level"),
        (["--uds", "/tmp/hybrid-test-never.sock", "--fd", "3"], None),
        (["--no-such-option"], "no-such-option"),
    ],
)
def test_invalid_values_exit_2(args, option):
    rc, out = run_cli(BASIC, *args)
    assert rc == 2, f"exit code {rc} for {args}; output:\n{out}"
    assert "Listening on" not in out
    if option:
        assert option in out, f"error does not mention {option!r}:\n{out}"
    else:
        assert "uds" in out and "fd" in out, out
    assert "Traceback" not in out, "argument errors are one line, not a traceback"


def test_help():
    rc, out = run_cli("--help")
    assert rc == 0
    for opt in (
        "--host",
        "--port",
        "--uds",
        "--fd",
        "--backlog",
        "--threads",
        "--max-threads",
        "--blocking-threshold",
        "--lifespan",
        "--root-path",
        "--timeout-keep-alive",
        "--log-level",
        "--access-log",
        "--no-access-log",
        "--server-header",
        "--no-server-header",
        "--date-header",
        "--no-date-header",
        "--factory",
        "--app-dir",
    ):
        assert opt in out, f"{opt} missing from --help"


# ---------------------------------------------------------------------------------------------------------
# App loading
# ---------------------------------------------------------------------------------------------------------
def test_unimportable_module():
    rc, out = run_cli("tests.apps.does_not_exist_xyz:app", "--port", "0")
    assert rc != 0
    assert "does_not_exist_xyz" in out
    assert "Listening on" not in out


def test_module_raising_import_error():
    rc, out = run_cli("tests.apps.broken:app", "--port", "0")
    assert rc != 0
    assert "broken-app-marker-5d1e" in out


def test_missing_attribute():
    rc, out = run_cli("tests.apps.basic:no_such_attribute", "--port", "0")
    assert rc != 0
    assert "no_such_attribute" in out


def test_malformed_app_string():
    rc, out = run_cli("not-a-valid-app-string", "--port", "0")
    assert rc != 0
    assert "Listening on" not in out


def test_factory():
    with Server("tests.apps.factory:create_app", "--factory", "--port", "0") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            r = c.get("/")
            assert r.status_code == 200
            assert r.text.startswith("from-factory")
        assert srv.stop() == 0


def test_app_dir():
    with Server("apps.basic:app", "--app-dir", str(TESTS), "--port", "0") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            assert c.get("/").text == "hello, world"


def test_app_dir_from_other_cwd(tmp_path):
    with Server(
        "basic:app",
        "--app-dir",
        str(TESTS / "apps"),
        "--port",
        "0",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO)},
    ) as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            assert c.get("/").text == "hello, world"


def test_demo_app_without_argument():
    with Server("--port", "0") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            r = c.get("/")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/html")
            assert "<html" in r.text.lower()
            j = c.get("/json")
            assert j.status_code == 200
            assert j.headers["content-type"].startswith("application/json")
            j.json()
        assert srv.stop() == 0


def test_hybrid_run_api(tmp_path):
    script = tmp_path / "run_it.py"
    script.write_text("import hybrid\nfrom tests.apps.basic import app\nhybrid.run(app, host='127.0.0.1', port=0)\n")
    with ScriptRun(script) as run:
        assert httpx.get(f"http://127.0.0.1:{run.port}/", timeout=5).text == "hello, world"
    assert run.rc == 0, run.output


# ---------------------------------------------------------------------------------------------------------
# Listeners
# ---------------------------------------------------------------------------------------------------------
def test_default_host_is_loopback():
    with Server(BASIC, "--port", "0") as srv:
        assert srv.host == "127.0.0.1"


def test_uds(tmp_path):
    path = str(tmp_path / "hybrid.sock")
    with Server(BASIC, "--uds", path) as srv:
        assert srv.uds == path
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, base_url="http://localhost", timeout=5) as c:
            r = c.get("/scope")
            assert r.status_code == 200
            assert r.json()["path"] == "/scope"
            assert c.post("/echo", content=b"over uds").content == b"over uds"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        from .support import RawClient

        with RawClient(None, sock=s) as rc:
            r = rc.request("GET", "/")
            assert r.status == 200 and r.body == b"hello, world"
        assert srv.stop() == 0


def test_fd(tmp_path):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    try:
        with Server(BASIC, "--fd", str(fd), pass_fds=[fd]) as srv:
            assert srv.fd == fd
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                assert c.get("/").text == "hello, world"
                assert c.get("/scope").json()["server"][1] == port
            assert srv.stop() == 0
    finally:
        sock.close()


def test_fd_unix_socket(tmp_path):
    path = str(tmp_path / "fd.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(128)
    fd = sock.fileno()
    try:
        with Server(BASIC, "--fd", str(fd), pass_fds=[fd]):
            with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://x", timeout=5) as c:
                assert c.get("/").text == "hello, world"
    finally:
        sock.close()


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
def test_ipv6():
    with Server(BASIC, "--host", "::1", "--port", "0") as srv:
        assert srv.host == "::1"
        with httpx.Client(base_url=f"http://[::1]:{srv.port}", timeout=5) as c:
            scope = c.get("/scope").json()
            assert scope["client"][0] == "::1"
            assert scope["server"][0] == "::1"
            assert scope["server"][1] == srv.port
        assert srv.stop() == 0


def test_port_in_use_fails():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        rc, out = run_cli(BASIC, "--port", str(s.getsockname()[1]))
        assert rc != 0
        assert "Listening on" not in out
    finally:
        s.close()


def test_backlog_accepted():
    with Server(BASIC, "--port", "0", "--backlog", "16") as srv:
        assert httpx.get(srv.url + "/", timeout=5).status_code == 200


# ---------------------------------------------------------------------------------------------------------
# Options visible in responses
# ---------------------------------------------------------------------------------------------------------
def test_root_path():
    with Server(BASIC, "--port", "0", "--root-path", "/api/v1") as srv:
        with httpx.Client(base_url=srv.url, timeout=5) as c:
            scope = c.get("/scope").json()
            assert scope["root_path"] == "/api/v1"


def test_no_server_header_no_date_header():
    with Server(BASIC, "--port", "0", "--no-server-header", "--no-date-header") as srv:
        with srv.connect() as c:
            r = c.request("GET", "/")
            assert r.status == 200
            assert r.header("server") is None, r.headers
            assert r.header("date") is None, r.headers
            r = c.request("GET", "/stream")
            assert r.header("server") is None and r.header("date") is None


def test_no_server_header_keeps_date():
    with Server(BASIC, "--port", "0", "--no-server-header") as srv:
        r = httpx.get(srv.url + "/", timeout=5)
        assert "server" not in r.headers
        assert "date" in r.headers


def test_no_date_header_keeps_server():
    with Server(BASIC, "--port", "0", "--no-date-header", "--server-header") as srv:
        r = httpx.get(srv.url + "/", timeout=5)
        assert "date" not in r.headers
        assert r.headers["server"].startswith("hybrid")


def test_error_responses_respect_header_flags():
    with Server(BASIC, "--port", "0", "--no-server-header") as srv:
        with srv.connect() as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n")
            r = c.read_response()
            assert r.status == 400
            assert r.header("server") is None


def test_timeout_keep_alive_closes_idle_connection():
    with Server(BASIC, "--port", "0", "--timeout-keep-alive", "1") as srv:
        with srv.connect() as c:
            assert c.request("GET", "/").status == 200
            t0 = time.monotonic()
            assert c.closed_by_peer(4), "idle connection not closed after --timeout-keep-alive 1"
            elapsed = time.monotonic() - t0
            assert 0.5 <= elapsed < 3.5, elapsed
        # an active connection is not cut while requests keep coming
        with srv.connect() as c:
            for _ in range(5):
                assert c.request("GET", "/").status == 200
                time.sleep(0.4)


def test_timeout_keep_alive_applies_to_connection_without_request():
    with Server(BASIC, "--port", "0", "--timeout-keep-alive", "1") as srv:
        with srv.connect() as c:
            assert c.closed_by_peer(5), "a connection that never sends a request must not stay open forever"


def test_timeout_request_head_answers_408_to_a_trickling_head():
    """Bytes arriving keep a connection active; a head that never completes still ends, with 408."""
    with Server(BASIC, "--port", "0", "--timeout-request-head", "1", "--timeout-keep-alive", "5") as srv:
        with srv.connect(timeout=10) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < 4:
                    c.send(b"X-Slow: 1\r\n")
                    time.sleep(0.25)
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
            assert r.status == 408, r
            assert r.header("connection") == "close"
            assert 0.8 <= time.monotonic() - t0 < 3.5
        # A head that completes in time is served as usual.
        with srv.connect() as c:
            c.send(b"GET / HTTP/1.1\r\n")
            time.sleep(0.5)
            c.send(b"Host: x\r\n\r\n")
            assert c.read_response().status == 200


def test_access_log_on_and_off():
    marker = "/access-log-marker-2b7c"
    with Server(BASIC, "--port", "0", "--access-log") as srv:
        assert httpx.get(srv.url + marker, timeout=5).status_code == 404
        deadline = time.monotonic() + 3
        while marker not in srv.output and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker in srv.output
    with Server(BASIC, "--port", "0", "--no-access-log") as srv:
        assert httpx.get(srv.url + marker, timeout=5).status_code == 404
        time.sleep(0.3)
        srv.stop()
        assert marker not in srv.output


@pytest.mark.parametrize("level", ["info", "debug"])
def test_log_levels_accepted(level):
    with Server(BASIC, "--port", "0", "--log-level", level) as srv:
        assert httpx.get(srv.url + "/", timeout=5).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("level", ["critical", "error", "warning"])
def test_quiet_log_levels_accepted(level):
    """Quiet levels may hide the 'Listening on' line: wait for the port instead."""
    port = _free_port()
    srv = Server(BASIC, "--port", str(port), "--log-level", level, ready=False)
    with srv:
        deadline = time.monotonic() + 10
        while True:
            assert srv.alive(), srv.output
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start serving"
                time.sleep(0.05)
        assert r.status_code == 200
        assert srv.stop() == 0
    assert "GET / " not in srv.output, "access log lines are info level: hidden at a quieter level"


def test_threads_options_accepted():
    with Server(BASIC, "--port", "0", "--threads", "2", "--max-threads", "8", "--blocking-threshold", "0.005") as srv:
        assert httpx.get(srv.url + "/", timeout=5).status_code == 200


def test_console_script_finds_app_in_cwd():
    """`hybrid main:app` run in the project folder imports main from there (as uvicorn does: app-dir ".")."""
    script = os.path.join(os.path.dirname(sys.executable), "hybrid")
    if not os.path.exists(script):
        pytest.skip("hybrid console script not installed in this environment")
    srv = Server(BASIC, "--port", "0")
    srv.args = [BASIC, "--port", "0"]
    srv.__class__ = type("ScriptServer", (Server,), {"cmd": property(lambda self: [script, *self.args])})
    with srv:
        assert httpx.get(srv.url + "/", timeout=5).text == "hello, world"
        assert srv.stop() == 0
