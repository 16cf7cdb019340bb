"""Issue 23's "done when": uvicorn's command lines (every option of its settings documentation) and uvicorn.run()
calls work with hybrid. Three tables:

- FLAGS: each uvicorn option as uvicorn's documentation writes it, parsed by hybrid's command line into the
  ServerConfig field it sets (in-process: cheap), and, in LIVE, run against real servers (several rows share one
  server) checking each does what it says. --workers, --reload* and --limit-max-requests are run for real in
  tests/test_supervisor.py, the --ssl-* options in tests/test_tls.py, --log-config in tests/test_uvicorn_logging.py.
- RUN: uvicorn.run()'s keywords into ServerConfig, and the README's `hybrid.run(..., workers=2)` script for real.
- ERRORS: bad values as uvicorn users type them: one line, the documented exit code.
"""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from hybrid.cli import config_from_args
from hybrid.config import ServerConfig
from hybrid.uvicorn_compat import run_options

from .support import REPO, RawClient, ScriptRun, Server, run_cli

pytestmark = pytest.mark.timeout(60)

# (uvicorn command-line fragment, the ServerConfig fields it sets). {tmp} is a folder holding env.txt and log.ini.
FLAGS = [
    # Application
    ("--factory", {"factory": True}),
    ("--app-dir src", {"app_dir": "src"}),
    ("--reset-contextvars", {"reset_contextvars": True}),
    # Socket binding
    ("--host 0.0.0.0", {"host": "0.0.0.0"}),
    ("--host ::", {"host": "::"}),
    ("--port 9001", {"port": 9001}),
    ("--uds /tmp/uvicorn.sock", {"uds": "/tmp/uvicorn.sock"}),
    ("--fd 3", {"fd": 3}),
    # Development
    ("--reload", {"reload": True}),
    ("--reload --reload-dir src --reload-dir lib", {"reload_dirs": ("src", "lib")}),
    ("--reload-delay 0.25", {"reload_delay": 0.25}),
    ("--reload --reload-include *.html", {"reload_includes": ("*.html",)}),
    ("--reload --reload-exclude *.tmp", {"reload_excludes": ("*.tmp",)}),
    # Production
    ("--workers 4", {"workers": 4}),
    ("--env-file {tmp}/env.txt", {"env_file": "{tmp}/env.txt"}),
    ("--timeout-worker-healthcheck 7", {"timeout_worker_healthcheck": 7.0}),
    # Logging
    ("--log-config {tmp}/log.ini", {"log_config": "{tmp}/log.ini"}),
    ("--log-level trace", {"log_level": "trace"}),
    ("--no-access-log", {"access_log": False}),
    ("--use-colors", {"use_colors": True}),
    ("--no-use-colors", {"use_colors": False}),
    # Implementation
    ("--loop auto", {"loop": "auto"}),
    ("--loop asyncio", {"loop": "asyncio"}),
    ("--loop uvloop", {"loop": "uvloop"}),
    ("--loop zuvloop", {"loop": "zuvloop"}),
    ("--http httptools", {"http": "httptools"}),
    ("--http zttp", {"http": "zttp"}),
    ("--http2", {"uvicorn_http2": True, "http2": True}),
    ("--http h11 --http2", {"http": "h11", "http2": True}),
    ("--http h11", {"http": "h11", "http2": False}),
    ("--ws none", {"ws": "none"}),
    ("--ws websockets", {"ws": "websockets"}),
    ("--ws websockets-sansio", {"ws": "websockets-sansio"}),
    ("--ws wsproto", {"ws": "wsproto"}),
    ("--ws-max-size 1024", {"ws_max_size": 1024}),
    ("--ws-max-queue 16", {"ws_max_queue": 16}),
    ("--ws-ping-interval 5.5", {"ws_ping_interval": 5.5}),
    ("--ws-ping-timeout 6", {"ws_ping_timeout": 6.0}),
    ("--ws-per-message-deflate false", {"ws_per_message_deflate": False}),
    ("--ws-per-message-deflate True", {"ws_per_message_deflate": True}),
    ("--lifespan off", {"lifespan": "off"}),
    ("--h11-max-incomplete-event-size 4096", {"max_incomplete_event_size": 4096}),
    # Application interface
    ("--interface asgi2", {"interface": "asgi2"}),
    # HTTP
    ("--root-path /api", {"root_path": "/api"}),
    ("--no-proxy-headers", {"proxy_headers": False}),
    ("--forwarded-allow-ips 10.0.0.1,10.0.0.2", {"forwarded_allow_ips": ("10.0.0.1", "10.0.0.2")}),
    ("--no-server-header", {"server_header": False}),
    ("--no-date-header", {"date_header": False}),
    ("--header X-A:1 --header X-B:2", {"headers": ("X-A:1", "X-B:2")}),
    # HTTPS
    ("--ssl-keyfile key.pem --ssl-certfile cert.pem", {"ssl_keyfile": "key.pem", "ssl_certfile": "cert.pem"}),
    ("--ssl-certfile cert.pem --ssl-keyfile-password secret", {"ssl_keyfile_password": "secret"}),
    ("--ssl-version 17", {"ssl_version": 17}),
    ("--ssl-certfile cert.pem --ssl-ca-certs ca.pem --ssl-cert-reqs 2", {"ssl_cert_reqs": 2}),
    ("--ssl-certfile cert.pem --ssl-ca-certs ca.pem", {"ssl_ca_certs": "ca.pem"}),
    ("--ssl-certfile cert.pem --ssl-ciphers ECDHE+AESGCM", {"ssl_ciphers": "ECDHE+AESGCM"}),
    # Resource limits
    ("--limit-concurrency 10", {"limit_concurrency": 10}),
    ("--limit-max-requests 100", {"limit_max_requests": 100}),
    ("--limit-max-requests-jitter 10", {"limit_max_requests_jitter": 10}),
    ("--backlog 128", {"backlog": 128}),
    # Timeouts
    ("--timeout-keep-alive 7", {"timeout_keep_alive": 7.0}),
    ("--timeout-graceful-shutdown 9", {"timeout_graceful_shutdown": 9.0}),
    ("--timeout-notify 30", {"timeout_notify": 30.0}),
]

# uvicorn's environment (its UVICORN_ prefix for every option, and the two variables it reads by name)
ENV = [
    ({"UVICORN_PORT": "9100"}, {"port": 9100}),
    ({"UVICORN_NO_ACCESS_LOG": "1"}, {}),  # (not a uvicorn variable either: no option is called that)
    ({"UVICORN_ACCESS_LOG": "false"}, {"access_log": False}),
    ({"WEB_CONCURRENCY": "3"}, {"workers": 3}),
    ({"FORWARDED_ALLOW_IPS": "*"}, {"forwarded_allow_ips": ("*",)}),
    ({"UVICORN_PORT": "9100", "HYBRID_PORT": "9200"}, {"port": 9200}),  # hybrid's own variables win
]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uvicorn_table")
    (folder / "env.txt").write_text("DROPIN_FROM_ENV_FILE=from the env file\n")
    (folder / "log.ini").write_text((REPO / "tests" / "test_uvicorn_logging.py").read_text()
                                    .split('UVICORN_INI = """', 1)[1].split('"""', 1)[0])
    return folder


@pytest.mark.parametrize("flags, fields", FLAGS, ids=[flags for flags, _ in FLAGS])
def test_uvicorn_flag_sets_its_field(tmp, flags, fields):
    config = config_from_args(["main:app", *flags.format(tmp=tmp).split()], environ={})
    got = {name: getattr(config, name) for name in fields}
    assert got == {name: value.format(tmp=tmp) if isinstance(value, str) else value
                   for name, value in fields.items()}


def test_every_uvicorn_option_is_in_the_table():
    """The table covers every option of uvicorn's settings page (as of uvicorn 0.41) but its --version and --help."""
    uvicorn_options = """--factory --app-dir --reset-contextvars --host --port --uds --fd --reload --reload-dir
        --reload-delay --reload-include --reload-exclude --workers --env-file --timeout-worker-healthcheck
        --log-config --log-level --no-access-log --use-colors --no-use-colors --loop --http --http2 --ws
        --ws-max-size --ws-max-queue --ws-ping-interval --ws-ping-timeout --ws-per-message-deflate --lifespan
        --h11-max-incomplete-event-size --interface --root-path --proxy-headers --no-proxy-headers
        --forwarded-allow-ips --server-header --no-server-header --date-header --no-date-header --header
        --ssl-keyfile --ssl-keyfile-password --ssl-certfile --ssl-version --ssl-cert-reqs --ssl-ca-certs
        --ssl-ciphers --limit-concurrency --limit-max-requests --limit-max-requests-jitter --backlog
        --timeout-keep-alive --timeout-graceful-shutdown --timeout-notify""".split()
    in_table = {word for flags, _ in FLAGS for word in flags.split() if word.startswith("--")}
    in_live = {word for group in LIVE for word in group[0].split() if word.startswith("--")}
    missing = [o for o in uvicorn_options if o not in in_table | in_live]
    assert missing == [], missing


@pytest.mark.parametrize("env, fields", ENV)
def test_uvicorn_environment(env, fields):
    config = config_from_args(["main:app"], environ=env)
    assert {name: getattr(config, name) for name in fields} == fields


# -- live: uvicorn command lines against real servers, several rows to a server ------------------------------

def _scope(srv: Server, path: str, headers=None) -> dict:
    return httpx.get(srv.url + path, headers=headers or {}, timeout=5).json()


def _check_http(srv: Server, tmp) -> None:
    scope = _scope(srv, "/scope", {"X-Forwarded-For": "10.1.2.3"})
    assert scope["root_path"] == "/api" and scope["path"] == "/api/scope"  # --root-path /api (as uvicorn has it)
    assert scope["client"][0] == "10.1.2.3"  # --proxy-headers --forwarded-allow-ips 127.0.0.1
    r = httpx.get(srv.url + "/", timeout=5)
    assert "server" not in r.headers and "date" not in r.headers  # --no-server-header --no-date-header
    assert r.headers["x-dropin"] == "1"  # --header X-Dropin:1
    with RawClient(srv.addr) as c:  # --h11-max-incomplete-event-size 4096: a longer head is refused
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        assert c.read_response().status == 431
    assert _scope(srv, "/lifespan")["startup"] >= 1  # --lifespan on
    with RawClient(srv.addr) as c:  # --timeout-keep-alive 1: an idle connection is closed after it
        assert c.request("GET", "/").status == 200
        started = time.monotonic()
        c.sock.settimeout(5)
        assert c.sock.recv(1) == b""
        assert 0.9 < time.monotonic() - started < 3.5


def _after_http(out: str) -> None:
    assert re.search(r"^DEBUG:    .*options not at their defaults: .*backlog=128", out, re.M)  # --log-level debug
    assert "limit_concurrency=50" in out and "ws_per_message_deflate=False" in out  # (as the server took them)
    assert '"GET /' not in out  # --no-access-log
    assert "--reset-contextvars: the asyncio context leak" in out


def _check_env_uds(srv: Server, tmp) -> None:
    transport = httpx.HTTPTransport(uds=srv.uds)
    with httpx.Client(transport=transport, timeout=5) as client:  # --uds: served on the unix socket
        assert client.get("http://x/").text == "from the env file"  # --env-file, --app-dir tests/apps


def _after_env_uds(out: str) -> None:
    assert "\x1b[32mINFO\x1b[0m:" in out  # --use-colors


def _check_ws_none(srv: Server, tmp) -> None:
    r = httpx.get(srv.url + "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"}, timeout=5)
    assert r.text == "plain http; upgrade=websocket"  # --ws none: an upgrade is a plain HTTP request


def _check_ws(srv: Server, tmp) -> None:
    async def main():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws", max_size=None) as ws:
            await ws.send("x" * 1025)  # --ws-max-size 1024: a longer message closes with 1009
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code

    import asyncio

    assert asyncio.run(asyncio.wait_for(main(), 10)) == 1009


def _after_ws(out: str) -> None:
    assert "--ws websockets: hybrid's WebSockets are wsproto" in out


def _check_factory_fd(srv: Server, tmp) -> None:
    assert httpx.get(srv.url + "/", timeout=5).text.startswith("from-factory")  # --factory, --fd


HTTP_FLAGS = ("--host 127.0.0.1 --root-path /api --proxy-headers --forwarded-allow-ips 127.0.0.1 "
              "--no-server-header --no-date-header --header X-Dropin:1 --h11-max-incomplete-event-size 4096 "
              "--lifespan on --log-level debug --no-access-log --timeout-keep-alive 1 --limit-concurrency 50 "
              "--backlog 128 --loop uvloop --http httptools --ws wsproto --interface asgi3 "
              "--ws-per-message-deflate false --reset-contextvars --timeout-graceful-shutdown 5 "
              "--timeout-worker-healthcheck 5 --ssl-version 17 --server-header --date-header --no-server-header "
              "--no-date-header")
# (uvicorn command line after the app, the app, a check while it serves, a check of its output after it stopped)
LIVE = [
    (HTTP_FLAGS + " --port 0", "tests.apps.basic:app", _check_http, _after_http),
    ("--app-dir tests/apps --uds {tmp}/u.sock --env-file {tmp}/env.txt --use-colors", "uvicorn_apps:env_app",
     _check_env_uds, _after_env_uds),
    ("--port 0 --ws none", "tests.apps.ws:app", _check_ws_none, None),
    ("--port 0 --ws websockets --ws-max-size 1024 --ws-ping-interval 20 --ws-ping-timeout 20 --ws-max-queue 32",
     "tests.apps.ws:app", _check_ws, _after_ws),
    ("--factory --fd {fd}", "tests.apps.factory:create_app", _check_factory_fd, None),
]


@pytest.mark.parametrize("flags, app, check, after", LIVE, ids=[row[1] for row in LIVE])
def test_uvicorn_command_line_serves(tmp, flags, app, check, after):
    listener = None
    pass_fds = ()
    if "{fd}" in flags:
        listener = socket.create_server(("127.0.0.1", 0))
        pass_fds = (listener.fileno(),)
    try:
        args = flags.format(tmp=tmp, fd=listener.fileno() if listener else 0).split()
        with Server(app, *args, pass_fds=pass_fds) as srv:
            if listener is not None:
                srv.host, srv.port = listener.getsockname()[:2]
            check(srv, tmp)
            assert srv.stop() == 0, srv.output
    finally:
        if listener is not None:
            listener.close()
    if after is not None:
        after(srv.output)


# -- uvicorn.run()'s keywords ------------------------------------------------------------------------------

UVICORN_LOG_CONFIG = {"version": 1, "disable_existing_loggers": False,
                      "formatters": {"default": {"()": "uvicorn.logging.DefaultFormatter",
                                                 "fmt": "%(levelprefix)s %(message)s", "use_colors": None}},
                      "handlers": {"default": {"formatter": "default", "class": "logging.StreamHandler",
                                               "stream": "ext://sys.stderr"}},
                      "loggers": {"uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False}}}
RUN = [
    ({"loop": "uvloop", "http": "httptools", "ws": "websockets"}, {"loop": "uvloop", "ws": "websockets"}),
    ({"h11_max_incomplete_event_size": 8192}, {"max_incomplete_event_size": 8192}),
    ({"reload": True, "reload_dirs": "src"}, {"reload_dirs": ("src",)}),
    ({"reload": True, "reload_dirs": ["a", "b"], "reload_includes": ["*.py"]}, {"reload_dirs": ("a", "b")}),
    ({"headers": [("X-A", "1")]}, {"headers": ("X-A:1",)}),
    ({"log_config": UVICORN_LOG_CONFIG}, {"log_config": UVICORN_LOG_CONFIG}),
    ({"callback_notify": None, "timeout_notify": 30}, {"timeout_notify": 30}),
    ({"ssl_version": 17, "limit_max_requests_jitter": 5, "reset_contextvars": True},
     {"ssl_version": 17, "limit_max_requests_jitter": 5}),
    ({"workers": 2, "timeout_worker_healthcheck": 3}, {"workers": 2, "timeout_worker_healthcheck": 3}),
    ({"proxy_headers": False, "forwarded_allow_ips": "*", "server_header": False},
     {"proxy_headers": False, "forwarded_allow_ips": ("*",)}),
]


@pytest.mark.parametrize("keywords, fields", RUN)
def test_uvicorn_run_keywords(keywords, fields):
    config = ServerConfig(app="main:app", **run_options(keywords))
    assert {name: getattr(config, name) for name in fields} == fields


def test_uvicorn_run_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        ServerConfig(app="main:app", **run_options({"no_such_option": 1}))


def test_readme_run_with_workers_serves(tmp_path):
    """The README's `hybrid.run("myproject.main:app", port=8000, workers=2)` script, with port 0: two workers."""
    readme = (REPO / "README.md").read_text()
    snippet = next(s for s in re.findall(r"```python\n(.*?)```", readme, re.S) if "workers=2" in s)
    (tmp_path / "myproject").mkdir()
    (tmp_path / "myproject" / "__init__.py").write_text("")
    (tmp_path / "myproject" / "main.py").write_text("from tests.apps.basic import app  # noqa: F401\n")
    script = tmp_path / "serve.py"
    script.write_text(snippet.replace("port=8000", "port=0"))
    with ScriptRun(script, timeout=20) as run:
        assert httpx.get(f"http://127.0.0.1:{run.port}/", timeout=5).text == "hello, world"
    assert run.rc == 0, run.output
    assert len(re.findall(r"Started worker process \[\d+\]", run.output)) == 2, run.output


# -- errors: one line each, the documented exit code ---------------------------------------------------------

ERRORS = [
    (["main:app", "--port", "abc"], 2, "--port"),
    (["main:app", "--workers", "0"], 2, "--workers"),
    (["main:app", "--loop", "mymodule:MyLoop"], 2, "--loop"),  # (uvicorn 0.36+ imports it; hybrid cannot)
    (["main:app", "--limit-max-requests-jitter", "-1"], 2, "'--limit-max-requests-jitter'"),
    (["main:app", "--log-config", "{tmp}/missing.ini"], 2, "'--log-config'"),
    (["main:app", "--log-config", "{tmp}/bad.ini"], 2, "uvicorn.logging.NoSuchFormatter"),
    (["main"], 2, "MODULE:ATTRIBUTE"),
    (["tests.apps.no_such_module:app", "--port", "0"], 1, "Could not import module"),
    (["tests.apps.basic:app", "--factory", "--port", "0"], 1, "--factory"),
]


@pytest.mark.parametrize("argv, code, says", ERRORS, ids=[" ".join(row[0]) for row in ERRORS])
def test_error_is_one_line(tmp, argv, code, says):
    (tmp / "bad.ini").write_text((tmp / "log.ini").read_text().replace(
        "uvicorn.logging.AccessFormatter", "uvicorn.logging.NoSuchFormatter"))
    rc, out = run_cli(*[a.format(tmp=tmp) for a in argv], timeout=10)
    lines = [line for line in out.splitlines() if line.strip()]
    assert rc == code and len(lines) == 1 and says in lines[0], out
