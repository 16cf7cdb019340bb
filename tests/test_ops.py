"""Operability (issue 13): logging, the access log, request ids, --config / HYBRID_* / --version, the banner.

Every test runs the real server as a subprocess over real sockets on 127.0.0.1 (tests/support.py).
"""

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from .support import REPO, Server, run_cli

pytestmark = pytest.mark.timeout(60)

BASIC = "tests.apps.basic:app"
OPS = "tests.apps.ops:app"
GENERATED_ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")


def wait_for(srv: Server, predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate(srv.output)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s; output:\n{srv.output}")


def json_lines(output: str) -> list[dict]:
    """The access records (the server's own lines are JSON objects too, without a status)."""
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [r for r in records if "status" in r]


def access_records(srv: Server, count: int) -> list[dict]:
    return wait_for(srv, lambda out: len(json_lines(out)) >= count and json_lines(out))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# 1. Logging
# ---------------------------------------------------------------------------------------------------------
def test_access_log_default_is_the_uvicorn_line():
    with Server(BASIC, "--port", "0") as srv, srv.connect() as c:
        assert c.request("GET", "/status/201?x=1").status == 201
        port = c.sock.getsockname()[1]
        line = f'INFO:     127.0.0.1:{port} - "GET /status/201?x=1 HTTP/1.1" 201'
        wait_for(srv, lambda out: line in out.splitlines())
    assert "\033[" not in srv.output, "no colour codes when the output is not a terminal"


def test_access_log_json_names_where_each_request_ran():
    with Server(OPS, "--port", "0", "--access-log-format", "json") as srv, srv.connect() as c:
        assert c.request("GET", "/plain?q=1", headers=[("X-Request-ID", "req-plain-1")]).body == b"ok"
        sse = c.request("GET", "/sse", headers=[("Accept", "text/event-stream")])  # handed off before app code
        assert sse.body == b"part 0\npart 1\npart 2\n"
        assert c.request("GET", "/stream").chunked  # starts streaming in a worker: streams from there, runs once
        assert c.request("GET", "/stream").chunked  # learned: handed off before any app code
        post = c.request("POST", "/post-stream", body=b"abc")  # a POST is never run twice: streams from a worker
        assert post.body == b"part 0\npart 1\npart 2\n"
        port = c.sock.getsockname()[1]
        records = access_records(srv, 5)
    assert not [line for line in srv.output.splitlines() if "GET /" in line and not line.startswith("{")]
    assert [(r["method"], r["path"], r["where"]) for r in records] == [
        ("GET", "/plain?q=1", "worker"),
        ("GET", "/sse", "pool"),
        ("GET", "/stream", "worker"),
        ("GET", "/stream", "pool"),
        ("POST", "/post-stream", "worker"),
    ]
    for r in records:
        assert r["status"] == 200 and r["client"] == f"127.0.0.1:{port}" and r["http_version"] == "1.1"
        assert isinstance(r["duration_ms"], float) and 0 <= r["duration_ms"] < 5000
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"])
    assert [r["bytes"] for r in records] == [2, 21, 21, 21, 21]
    assert records[0]["request_id"] == "req-plain-1"
    assert all(GENERATED_ID.match(r["request_id"]) for r in records[1:])
    assert len({r["request_id"] for r in records}) == 5


def test_no_access_log_and_quiet_level_build_nothing():
    with Server(OPS, "--port", "0", "--no-access-log", "--access-log-format", "json") as srv, srv.connect() as c:
        for _ in range(3):
            assert c.request("GET", "/plain").status == 200
        time.sleep(0.3)
    assert json_lines(srv.output) == [] and "GET /plain" not in srv.output


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_log_config_json_replaces_the_handlers(tmp_path):
    config = {
        "version": 1,
        "formatters": {"custom": {"format": "CUSTOM[%(name)s] %(message)s"},
                       "json": {"()": "hybrid.logs.JsonAccessFormatter"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "custom", "stream": "ext://sys.stderr"},
                     "acc": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "loggers": {"hybrid.error": {"handlers": ["err"], "level": "INFO", "propagate": False},
                    "hybrid.access": {"handlers": ["acc"], "level": "INFO", "propagate": False}},
    }
    path = _write(tmp_path, "log.json", json.dumps(config))
    with Server(OPS, "--port", "0", "--log-config", path) as srv, srv.connect() as c:
        assert c.request("GET", "/plain").status == 200
        records = access_records(srv, 1)
    assert "CUSTOM[hybrid.error] Listening on http://127.0.0.1:" in srv.output
    assert records[0]["path"] == "/plain" and records[0]["where"] == "worker"


@pytest.mark.parametrize("name, text, why", [
    ("missing.json", None, "is not a file"),
    ("log.json", "{not json", "not valid JSON"),
    ("log.json", '{"handlers": {}}', "version"),
    ("log.txt", '{"version": 1}', ".json, .yaml, .yml or .ini"),
    ("log.json", '{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}', "dictConfig"),
])
def test_bad_log_config_is_one_line_exit_2(tmp_path, name, text, why):
    path = _write(tmp_path, name, text) if text is not None else str(tmp_path / name)
    rc, out = run_cli(BASIC, "--port", "0", "--log-config", path)
    assert rc == 2, out
    errors = [line for line in out.splitlines() if line.startswith("hybrid: error:")]
    assert len(errors) == 1 and "--log-config" in errors[0] and why in errors[0], out  # one line, as argparse's
    assert "Traceback" not in out and "Listening on" not in out


def test_yaml_log_config_needs_pyyaml(tmp_path):
    """Without PyYAML (hidden here by a module that fails to import), a YAML file is a one-line error."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "yaml.py").write_text("raise ImportError('No module named yaml')\n")
    path = _write(tmp_path, "log.yaml", "version: 1\n")
    rc, out = run_cli(BASIC, "--port", "0", "--log-config", path,
                      env={"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])})
    assert rc == 2 and "PyYAML" in out and "--log-config" in out and "Traceback" not in out, out


def test_yaml_log_config_with_pyyaml(tmp_path):
    pytest.importorskip("yaml")
    path = _write(tmp_path, "log.yml", "version: 1\nformatters:\n  f: {format: 'YAMLCONF %(message)s'}\n"
                                       "handlers:\n  h: {class: logging.StreamHandler, formatter: f}\n"
                                       "loggers:\n  hybrid: {handlers: [h], level: INFO, propagate: false}\n")
    with Server(OPS, "--port", "0", "--log-config", path) as srv, srv.connect() as c:
        assert c.request("GET", "/plain").status == 200
        wait_for(srv, lambda out: 'YAMLCONF 127.0.0.1:' in out and '"GET /plain HTTP/1.1" 200' in out)
    assert "YAMLCONF Listening on http://127.0.0.1:" in srv.output


def test_colours_only_on_a_terminal():
    """With stderr on a pseudo-terminal the level names are coloured; piped (every other test) they are not."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hybrid", BASIC, "--port", "0"], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 15
        while b"Listening on" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        os.close(master)
    assert b"Listening on" in out, out
    assert b"\x1b[32mINFO\x1b[0m:" in out, out


# ---------------------------------------------------------------------------------------------------------
# 2. Request ids
# ---------------------------------------------------------------------------------------------------------
def test_request_id_kept_generated_and_echoed():
    with Server(OPS, "--port", "0", "--request-id-header", "X-Request-ID", "--access-log-format", "json") as srv, \
            srv.connect() as c:
        kept = c.request("GET", "/id", headers=[("X-Request-ID", "abc.DEF-123_~!")])
        assert kept.body == b"abc.DEF-123_~!" and kept.header_all("x-request-id") == ["abc.DEF-123_~!"]
        made = [c.request("GET", "/id") for _ in range(3)]
        ids = [r.body.decode() for r in made]
        assert all(GENERATED_ID.match(i) for i in ids) and len(set(ids)) == 3, ids
        assert [r.header("x-request-id") for r in made] == ids
        for bad in ("has space", "x" * 201, "caf\xe9"):  # a space, too long, not ASCII: replaced
            r = c.request("GET", "/id", headers=[("X-Request-ID", bad)])
            assert GENERATED_ID.match(r.body.decode()) and r.header("x-request-id") == r.body.decode()
        assert c.request("GET", "/id", headers=[("X-Request-ID", "y" * 200)]).body == b"y" * 200  # the longest
        own = c.request("GET", "/own-header")
        assert own.header_all("x-request-id") == ["from-the-app"]  # the app's own header is not duplicated
        records = access_records(srv, 9)
    assert records[0]["request_id"] == "abc.DEF-123_~!"
    assert [r["request_id"] for r in records[1:4]] == ids


def test_request_id_header_off_by_default_and_custom_name():
    with Server(OPS, "--port", "0") as srv, srv.connect() as c:
        r = c.request("GET", "/id", headers=[("X-Request-ID", "abc")])
        assert r.body == b"abc" and r.header("x-request-id") is None
    with Server(OPS, "--port", "0", "--request-id-header", "X-Trace") as srv, srv.connect() as c:
        r = c.request("GET", "/id", headers=[("X-Trace", "t-1"), ("X-Request-ID", "ignored")])
        assert r.body == b"t-1" and r.header("x-trace") == "t-1" and r.header("x-request-id") is None


def test_request_id_follows_the_handoff():
    """The pool sees the id its StreamingHandoff carries: the one the client sent, or the one the worker made
    when it handed a learned streaming route over (the response, the app and the access log agree)."""
    with Server(OPS, "--port", "0", "--access-log-format", "json", "--request-id-header", "X-Request-ID") as srv, \
            srv.connect() as c:
        sse = c.request("GET", "/sse", headers=[("Accept", "text/event-stream"), ("X-Request-ID", "sse-7")])
        assert sse.header("x-request-id") == "sse-7"
        first = c.request("GET", "/stream")  # streams from a worker: the route is learned
        second = c.request("GET", "/stream")  # handed off before any app code runs
        seen = json.loads(c.request("GET", "/seen").body)
        records = access_records(srv, 4)
    assert seen[0] == ["/sse", "sse-7", "hybrid-async-pool"]
    (_, first_id, first_thread), (_, second_id, second_thread) = seen[1:3]
    assert first_thread != "hybrid-async-pool" and second_thread == "hybrid-async-pool", seen
    assert first_id == first.header("x-request-id") and second_id == second.header("x-request-id"), seen
    assert GENERATED_ID.match(second_id) and first_id != second_id, seen
    assert [(r["where"], r["request_id"]) for r in records[:3]] == [
        ("pool", "sse-7"), ("worker", first_id), ("pool", second_id)]


def test_websocket_has_a_request_id():
    with Server("tests.apps.ws:app", "--port", "0", "--access-log-format", "json") as srv, srv.connect() as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"X-Request-ID: ws-1\r\n\r\n")
        assert c.read_head().status == 101
        records = access_records(srv, 1)
    assert records[0]["request_id"] == "ws-1" and records[0]["method"] == "WebSocket"


# ---------------------------------------------------------------------------------------------------------
# 3. Configuration: --config, HYBRID_*, --version, the banner
# ---------------------------------------------------------------------------------------------------------
def _port_of(srv: Server) -> int:
    return srv.port


def test_command_line_over_environment_over_file(tmp_path):
    p_file, p_env, p_cli = free_port(), free_port(), free_port()
    config = _write(tmp_path, "hybrid.toml", f'port = {p_file}\naccess-log-format = "json"\nthreads = 2\n'
                                             'async_path = ["/never/*"]\n')
    with Server(OPS, "--config", config) as srv:
        assert srv.port == p_file and "2 threads" in srv.output
    with Server(OPS, "--config", config, env={"HYBRID_PORT": str(p_env), "HYBRID_THREADS": "1"}) as srv:
        assert srv.port == p_env and "1 thread," in srv.output
        with srv.connect() as c:
            assert c.request("GET", "/plain").status == 200
        assert access_records(srv, 1)[0]["path"] == "/plain"  # the file's access-log-format still applies
    with Server(OPS, "--port", str(p_cli), env={"HYBRID_CONFIG": config, "HYBRID_PORT": str(p_env),
                                                "HYBRID_ACCESS_LOG_FORMAT": "text"}) as srv:
        assert srv.port == p_cli
        with srv.connect() as c:
            assert c.request("GET", "/plain").status == 200
        wait_for(srv, lambda out: '"GET /plain HTTP/1.1" 200' in out)


def test_lists_from_file_environment_and_command_line(tmp_path):
    """A list (--async-path) comes whole from one place: the command line replaces the environment's, which
    replaces the file's; where it came from shows in where the request ran."""
    config = _write(tmp_path, "hybrid.toml", 'async-path = ["/plain"]\naccess-log-format = "json"\n')

    def where(*args, env=None) -> dict:
        with Server(OPS, "--port", "0", "--config", config, *args, env=env) as srv, srv.connect() as c:
            for path in ("/plain", "/other"):
                assert c.request("GET", path).status == 200
            return {r["path"]: r["where"] for r in access_records(srv, 2)}

    assert where() == {"/plain": "pool", "/other": "worker"}
    assert where(env={"HYBRID_ASYNC_PATH": "/nothing,/other"}) == {"/plain": "worker", "/other": "pool"}
    assert where("--async-path", "/x", env={"HYBRID_ASYNC_PATH": "/other"}) == {"/plain": "worker",
                                                                                "/other": "worker"}


def test_environment_workers_and_booleans():
    with Server(OPS, "--port", "0", env={"HYBRID_WORKERS": "2", "HYBRID_ACCESS_LOG": "off"}) as srv:
        assert "(tests.apps.ops:app; 2 workers, 1 thread each," in srv.output
        with srv.connect() as c:
            assert c.request("GET", "/plain").status == 200
        time.sleep(0.3)
    assert "GET /plain" not in srv.output


@pytest.mark.parametrize("toml, option", [
    ('port = "8001"', "--port"),
    ("port = 70000", "--port"),
    ("port = true", "--port"),
    ("workers = 0", "--workers"),
    ('lifespan = "maybe"', "--lifespan"),
    ("access-log = 1", "--access-log"),
    ('async-path = [1, 2]', "--async-path"),
    ("timeout-keep-alive = -1", "--timeout-keep-alive"),
    ("no-such-option = 1", "no-such-option"),
    ("port = ", "--config"),
    ('request-id-header = "X Bad"', "--request-id-header"),
])
def test_bad_value_in_file_is_one_line_exit_2(tmp_path, toml, option):
    config = _write(tmp_path, "hybrid.toml", toml + "\n")
    rc, out = run_cli(BASIC, "--config", config)
    assert rc == 2, out
    assert option in out and "Traceback" not in out and "Listening on" not in out, out


@pytest.mark.parametrize("env, option", [
    ({"HYBRID_PORT": "abc"}, "HYBRID_PORT"),
    ({"HYBRID_PORT": "-5"}, "--port"),
    ({"HYBRID_WORKERS": "0"}, "--workers"),
    ({"HYBRID_ACCESS_LOG": "maybe"}, "HYBRID_ACCESS_LOG"),
    ({"HYBRID_LOG_LEVEL": "loud"}, "HYBRID_LOG_LEVEL"),
    ({"HYBRID_BLOCKING_THRESHOLD": "soon"}, "--blocking-threshold"),
    ({"HYBRID_CONFIG": "/nonexistent/hybrid.toml"}, "--config"),
])
def test_bad_environment_value_is_one_line_exit_2(env, option):
    rc, out = run_cli(BASIC, *([] if "HYBRID_PORT" in env else ["--port", "0"]), env=env)
    assert rc == 2, out
    assert option in out and "Traceback" not in out and "Listening on" not in out, out


def test_unrelated_hybrid_variables_are_ignored():
    with Server(BASIC, "--port", "0", env={"HYBRID_SOMETHING_ELSE": "x"}) as srv, srv.connect() as c:
        assert c.request("GET", "/").status == 200


def test_version():
    import hybrid

    rc, out = run_cli("--version")
    assert rc == 0 and out.strip() == f"hybrid {hybrid.__version__}", out


def test_banner():
    with Server(BASIC, "--port", "0") as srv:
        banner = next(line for line in srv.output.splitlines() if "Listening on" in line)
    assert re.search(r"Listening on http://127\.0\.0\.1:\d+ \(tests\.apps\.basic:app; 1 worker, 1 thread, loop uvloop, "
                     r"compiled extensions; press CTRL\+C to quit\)$", banner), banner
    with Server(BASIC, "--port", "0", "--threads", "3") as srv:
        assert "(tests.apps.basic:app; 1 worker, 3 threads, loop uvloop," in srv.output
    with Server("--port", "0") as srv:  # no APP: the demo, and the line says so
        assert "(the built-in demo, as no APP was given; 1 worker," in srv.output, srv.output


def test_serverconfig_refuses_a_bool_for_a_number():
    """hybrid.run(port=True) must not bind port 1 (a bool is an int to isinstance)."""
    from hybrid.config import ConfigError, ServerConfig

    for field in ("port", "workers", "threads", "backlog"):
        with pytest.raises(ConfigError, match=field):
            ServerConfig(**{field: True})


def test_lazy_request_id_reads_like_a_dict():
    """scope["extensions"]["hybrid.request_id"] works its id out on first use; every way of reading it sees it."""
    import copy
    import pickle

    from hybrid.request_id import RequestIds, lazy_request_id

    ids = RequestIds()
    headers = [(b"host", b"x"), (b"x-request-id", b"abc")]
    readers = [
        lambda d: d["id"], lambda d: d.get("id"), lambda d: list(d.values())[0], lambda d: dict(d)["id"],
        lambda d: {**d}["id"], lambda d: json.loads(json.dumps(d))["id"], lambda d: copy.copy(d)["id"],
        lambda d: copy.deepcopy(d)["id"], lambda d: pickle.loads(pickle.dumps(d))["id"],
        lambda d: dict(d.items())["id"],
    ]
    for read in readers:
        assert read(lazy_request_id(ids, headers)) == "abc"
    d = lazy_request_id(ids, headers)
    assert "id" in d and len(d) == 1 and list(d) == ["id"] and d == {"id": "abc"} and repr(d) == "{'id': 'abc'}"
    made = lazy_request_id(ids, [(b"host", b"x")])
    assert GENERATED_ID.match(made["id"]) and made["id"] == made.get("id")  # made once, then kept


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_access_log_same_line_with_or_without_the_fast_path(fmt):
    """While only the default handlers exist, lines go straight to their stream; a handler the app adds later
    gets every later record (with its fields), and the lines on stderr look the same before and after."""
    with Server(OPS, "--port", "0", "--access-log-format", fmt) as srv, srv.connect() as c:
        assert c.request("GET", "/before?a=1", headers=[("X-Request-ID", "r-1")]).status == 200
        assert c.request("GET", "/capture-on").status == 200
        assert c.request("GET", "/after?a=1", headers=[("X-Request-ID", "r-2")]).status == 200
        captured = json.loads(c.request("GET", "/captured").body)
        port = c.sock.getsockname()[1]
        if fmt == "text":
            # (in the order of the requests: the buffered /before goes out before /capture-on, the first record
            # the logging module writes)
            lines = wait_for(srv, lambda out: [ln for ln in out.splitlines() if "GET /" in ln and "/captured" not in ln]
                             if "/after" in out else None)
            assert lines == [f'INFO:     127.0.0.1:{port} - "GET /before?a=1 HTTP/1.1" 200',
                             f'INFO:     127.0.0.1:{port} - "GET /capture-on HTTP/1.1" 200',
                             f'INFO:     127.0.0.1:{port} - "GET /after?a=1 HTTP/1.1" 200'], lines
        else:
            records = [r for r in access_records(srv, 4) if r["path"] in ("/before?a=1", "/after?a=1")]
            for r in records:
                del r["time"], r["duration_ms"]
            assert records == [
                {"method": "GET", "path": f"/{name}?a=1", "status": 200, "bytes": 2, "client": f"127.0.0.1:{port}",
                 "request_id": rid, "where": "worker", "http_version": "1.1"}
                for name, rid in (("before", "r-1"), ("after", "r-2"))]
    assert captured[0] == [f'127.0.0.1:{port} - "GET /capture-on HTTP/1.1" 200', captured[0][1], "worker"]
    assert captured[1] == [f'127.0.0.1:{port} - "GET /after?a=1 HTTP/1.1" 200', "r-2", "worker"]


def test_logging_setup_imports_none_of_cli_server_supervisor():
    """Logging setup lives in hybrid/logs.py, which cli.py, server.py and supervisor.py import, never the reverse."""
    code = ("import sys, hybrid.logs; hybrid.logs.setup_logging('info'); "
            "print(' '.join(m for m in sys.modules if m in ('hybrid.cli', 'hybrid.server', 'hybrid.supervisor')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr
