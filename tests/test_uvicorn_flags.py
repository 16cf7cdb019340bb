"""uvicorn's command-line options (its settings documentation) work with hybrid: honoured, or accepted with one
line saying what hybrid does instead (docs/uvicorn.md)."""

import socket

import httpx
import pytest

from .support import ScriptRun, Server, run_cli

pytestmark = pytest.mark.timeout(60)

BASIC = "tests.apps.basic:app"
APPS = "tests.apps.uvicorn_apps"


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "flags, note",
    [
        (["--loop", "uvloop"], None),
        (["--loop", "auto"], None),
        (["--loop", "asyncio"], "--loop asyncio cannot be honoured"),
        (["--http", "httptools"], None),
        (["--http", "h11"], "--http h11: HTTP/1.1 only (as --http 1.1), parsed with httptools"),
        (["--http2"], "--http2: HTTP/2 is served"),
        (["--ws", "websockets"], "--ws websockets: hybrid's WebSockets are wsproto"),
        (["--ws", "auto"], None),
        (["--ws-max-queue", "32"], "--ws-max-queue: hybrid keeps no incoming WebSocket queue"),
        (["--timeout-notify", "30"], "--timeout-notify: hybrid's supervisor replaces a worker"),
        (["--reload-delay", "0.25"], None),
        (["--interface", "asgi3"], None),
    ],
)
def test_uvicorn_flag_is_accepted_and_says_what_it_does(flags, note):
    with Server(BASIC, "--port", "0", *flags) as srv:
        r = httpx.get(srv.url + "/", timeout=5)
        assert r.status_code == 200
        assert srv.stop() == 0
    out = srv.output
    notes = [line for line in _lines(out) if line.split()[0] in ("INFO:", "WARNING:") and "--" in line]
    if note is None:
        assert notes == [], out
    else:
        assert len(notes) == 1 and note in notes[0], out


def test_ssl_version_other_than_tls_server_is_one_warning(tmp_path):
    # (no TLS needed to see the line: uvicorn always has an ssl_version, hybrid says what it does with one)
    with Server(BASIC, "--port", "0", "--ssl-version", "3") as srv:
        assert srv.stop() == 0
    hits = [line for line in _lines(srv.output) if "--ssl-version" in line]
    assert len(hits) == 1 and "cannot be honoured" in hits[0], srv.output
    with Server(BASIC, "--port", "0", "--ssl-version", "17") as srv:
        assert srv.stop() == 0
    assert "--ssl-version" not in srv.output


def _raw(url_port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", url_port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def _head_fields(raw: bytes) -> list[tuple[str, str]]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in head)]


def test_header_is_sent_in_every_response_once():
    with Server(BASIC, "--port", "0", "--header", "X-Dropin: one", "--header", "X-Other:a,b") as srv:
        ok = _head_fields(_raw(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        bad_raw = _raw(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        bad = _head_fields(bad_raw)
        assert srv.stop() == 0
    assert bad_raw.startswith(b"HTTP/1.1 400"), bad_raw  # (the error path writes its own head)
    for fields in (ok, bad):
        assert [v for n, v in fields if n == "x-dropin"] == ["one"], fields
        assert [v for n, v in fields if n == "x-other"] == ["a,b"], fields
        assert [v for n, v in fields if n == "server"] == ["hybrid"], fields


def test_header_server_replaces_hybrids():
    with Server(BASIC, "--port", "0", "--header", "Server: mine") as srv:
        fields = _head_fields(_raw(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert srv.stop() == 0
    assert [v for n, v in fields if n == "server"] == ["mine"], fields
    assert len([n for n, _ in fields if n == "date"]) == 1, fields


@pytest.mark.parametrize("value", ["no-colon", "Bad Name: x", ": empty"])
def test_bad_header_is_one_line_exit_2(value):
    rc, out = run_cli(BASIC, "--header", value)
    assert rc == 2, out
    lines = _lines(out)
    assert len(lines) == 1 and "'--header'" in lines[0] and "NAME:VALUE" in lines[0], out


@pytest.mark.parametrize("interface", ["asgi2", "auto"])
@pytest.mark.parametrize("app", ["ASGI2App", "asgi2_function"])
def test_interface_asgi2_serves_an_asgi2_app(interface, app):
    with Server(f"{APPS}:{app}", "--port", "0", "--interface", interface) as srv:
        r = httpx.get(srv.url + "/two", timeout=5)
        assert srv.stop() == 0
    assert r.status_code == 200 and r.text == "asgi2 http /two", r.text


def test_interface_wsgi_is_one_line_exit_2():
    rc, out = run_cli(BASIC, "--interface", "wsgi")
    assert rc == 2, out
    lines = _lines(out)
    assert len(lines) == 1 and "'--interface'" in lines[0] and "hybrid serves ASGI" in lines[0], out


def test_env_file_sets_variables_the_app_sees(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport DROPIN_FROM_ENV_FILE='from the file'\nDROPIN_KEPT=file\n")
    with Server(f"{APPS}:env_app", "--port", "0", "--env-file", str(env_file)) as srv:
        r = httpx.get(srv.url + "/", timeout=5)
        assert srv.stop() == 0
    assert r.text == "from the file"
    # a variable already set wins over the file (python-dotenv's default, as uvicorn uses it)
    with Server(f"{APPS}:env_app", "--port", "0", "--env-file", str(env_file),
                env={"DROPIN_FROM_ENV_FILE": "from the environment"}) as srv:
        r = httpx.get(srv.url + "/", timeout=5)
        assert srv.stop() == 0
    assert r.text == "from the environment"


def test_env_file_missing_is_one_line_exit_2(tmp_path):
    rc, out = run_cli(BASIC, "--env-file", str(tmp_path / "nope.env"))
    assert rc == 2, out
    lines = _lines(out)
    assert len(lines) == 1 and "'--env-file'" in lines[0] and "is not a file" in lines[0], out


RUN_SCRIPT = """
import ssl, sys
import hybrid
from tests.apps.basic import app

log_config = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"marked": {"format": "DICTCFG %(levelname)s %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "marked", "stream": "ext://sys.stdout"}},
    "loggers": {"hybrid": {"handlers": ["out"], "level": "INFO", "propagate": False}},
}
hybrid.run(app, host="127.0.0.1", port=0, loop="uvloop", http="httptools", ws="websockets", interface="asgi3",
           h11_max_incomplete_event_size=8192, headers=[("X-Run", "yes")], log_config=log_config,
           ssl_version=ssl.PROTOCOL_TLS_SERVER, callback_notify=None, timeout_notify=30, ws_max_queue=32)
"""


def test_run_takes_uvicorn_keywords_and_a_dict_log_config(tmp_path):
    script = tmp_path / "run_uvicorn_style.py"
    script.write_text(RUN_SCRIPT)
    with ScriptRun(script) as run:
        r = httpx.get(f"http://127.0.0.1:{run.port}/", timeout=5)
        assert r.text == "hello, world" and r.headers.get("x-run") == "yes", r.headers
    out = run.output
    assert run.rc == 0, out
    listening = [line for line in out.splitlines() if "Listening on" in line]
    assert listening and listening[0].startswith("DICTCFG INFO "), out  # the dict config formats hybrid's lines
    assert "--ws websockets" in out and "--ws-max-queue" in out and "--timeout-notify" in out, out


def test_interface_auto_still_refuses_a_sync_asgi3_shaped_function():
    rc, out = run_cli(f"{APPS}:sync_mistake", "--port", "0", timeout=8)
    assert rc == 1, out
    lines = _lines(out)
    assert len(lines) == 1 and "is a synchronous function" in lines[0], out


def _ws_head(port: int, path: str, key: str | None = "dGhlIHNhbXBsZSBub25jZQ==") -> bytes:
    """The response head to a WebSocket handshake on ``path`` (no key: a handshake wsproto refuses)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   + (f"Sec-WebSocket-Key: {key}\r\n" if key else "") + "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := s.recv(65536)):
            data += chunk
        return data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def test_header_is_sent_on_websocket_handshake_responses():
    """--header on the 101, on a denial (403), on the denial-response extension (418) and on a handshake
    wsproto refuses (400): once each, its 'server' replacing hybrid's."""
    with Server("tests.apps.ws:app", "--port", "0", "--header", "X-Dropin: one", "--header", "Server: mine") as srv:
        heads = {path: _ws_head(srv.port, path) for path in ("/", "/deny", "/response")}
        heads["no key"] = _ws_head(srv.port, "/", key=None)
        assert srv.stop() == 0
    statuses = {path: head.split(b" ", 2)[1] for path, head in heads.items()}
    assert statuses == {"/": b"101", "/deny": b"403", "/response": b"418", "no key": b"400"}, heads
    for path, head in heads.items():
        fields = _head_fields(head)
        assert [v for n, v in fields if n == "x-dropin"] == ["one"], (path, head)
        assert [v for n, v in fields if n == "server"] == ["mine"], (path, head)
