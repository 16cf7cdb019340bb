"""The server's own messages as a uvicorn user meets them (issue 23): each said once, naming what it is about."""

import asyncio
import json
import re
import signal
import threading
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from .support import REPO, Server, run_cli

pytestmark = pytest.mark.timeout(60)

APPS = "tests.apps.uvicorn_apps"
MARKER = "startup-raised-marker-5d1e"


@pytest.mark.parametrize("app, flags, where", [
    ("startup_reports_and_raises", [], "the loop of thread hybrid-worker-0"),
    ("startup_reports_and_raises", ["--threads", "2"], "the loop of thread hybrid-worker-0"),
    ("startup_raises", ["--lifespan", "on"], "the loop of thread hybrid-worker-0"),
    ("startup_reports_and_raises", ["--mode", "async"], "the async pool's loop"),
])
def test_lifespan_startup_failure_traceback_is_printed_once_naming_the_loop(app, flags, where):
    rc, out = run_cli(f"{APPS}:{app}", "--port", "0", *flags, timeout=15)
    assert rc == 3, out
    lines = out.splitlines()
    assert sum("Traceback (most recent call last)" in line for line in lines) == 1, out
    assert sum(line == f"RuntimeError: {MARKER}" for line in lines) == 1, out
    errors = [line for line in lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and f"Application startup failed ({where}): Traceback" in errors[0], out


def test_sigterm_with_a_websocket_open_says_nothing_timed_out():
    """No --timeout-graceful-shutdown, one WebSocket open: SIGTERM closes it with 1001, the client answers the
    close, and the server exits 0 without a line saying the graceful shutdown timed out."""
    with Server("tests.apps.ws:app", "--port", "0") as srv:
        async def main():
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                srv.signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 5)
                return info.value.rcvd.code if info.value.rcvd else None

        assert asyncio.run(asyncio.wait_for(main(), 10)) == 1001
        assert srv.wait(10) == 0
    assert "Shutting down" in srv.output
    assert "timed out" not in srv.output and "Task was destroyed" not in srv.output, srv.output


def test_json_access_log_format_makes_every_line_json_and_served_counts_in_words():
    with Server("tests.apps.basic:app", "--port", "0", "--access-log-format", "json") as srv:
        assert httpx.get(srv.url + "/", timeout=5).status_code == 200
        assert srv.stop() == 0
    records = [json.loads(line) for line in srv.output.splitlines() if line.strip()]  # (a text line fails here)
    messages = [r["message"] for r in records if "message" in r]
    assert any(m.startswith("Listening on http://") for m in messages), messages
    assert [r["path"] for r in records if "status" in r] == ["/"], records
    served = [m for m in messages if m.startswith("Served ")]
    assert len(served) == 1 and served[0].startswith("Served 1 request; 0 takeovers of blocked threads"), served


def test_log_level_debug_says_what_runs():
    with Server("tests.apps.basic:app", "--port", "0", "--log-level", "debug", "--threads", "2") as srv:
        assert srv.stop() == 0
    debug = [line for line in srv.output.splitlines() if line.startswith("DEBUG:")]
    assert any("options not at their defaults: port=0, threads=2" in line for line in debug), srv.output
    assert any(line.endswith("Imported tests.apps.basic from " + str(REPO / "tests" / "apps" / "basic.py"))
               for line in debug), srv.output
    assert any("Lifespan startup complete (the loop of thread hybrid-worker-1)" in line for line in debug), srv.output


def test_help_opens_in_plain_words_and_groups_options_in_sections():
    rc, out = run_cli("--help")
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0] == "usage: hybrid [OPTIONS] [APP]", lines[:3]
    assert lines[2].startswith("Serve an ASGI application"), lines[:4]
    titles = [line[:-1] for line in lines if line.endswith(":") and not line.startswith(" ")]
    assert titles == ["options", "Application", "Socket binding", "Development", "Production (processes and threads)",
                      "Logging", "HTTP", "WebSockets", "HTTPS", "Resource limits", "Timeouts"], titles
    section = None
    where = {}
    for line in lines:
        if line[:-1] in titles:
            section = line[:-1]
        elif line.startswith("  --"):
            where[line.split()[0]] = section
    assert where["--port"] == "Socket binding" and where["--reload-delay"] == "Development", where
    assert where["--timeout-keep-alive"] == "Timeouts" and where["--ssl-version"] == "HTTPS", where
    assert None not in where.values() and "options" not in {where[o] for o in where if o not in ("--version",
                                                                                                  "--config")}


def test_workers_say_their_pids_and_replaced_comes_after_the_old_workers_finish(tmp_path):
    """--workers 2: SIGHUP while an old worker holds a request: 'Replaced 2 workers (SIGHUP)' only once that
    request is answered and the old workers have gone; each 'Shutting down' line names its process."""
    release = tmp_path / "release"
    with Server(f"{APPS}:held", "--port", "0", "--workers", "2", "--no-access-log",
                env={"HELD_RELEASE": str(release)}) as srv:
        assert wait_for(lambda: len(_pids(srv.output, "Started worker process")) == 2, 10), srv.output
        old = _pids(srv.output, "Started worker process")
        answered = []
        slow = threading.Thread(target=lambda: answered.append(
            (httpx.get(srv.url + "/hold", timeout=15).status_code, time.monotonic())))
        slow.start()
        time.sleep(0.3)  # (the request is held in an old worker)
        srv.signal(signal.SIGHUP)
        assert wait_for(lambda: "New workers ready" in srv.output or "Replaced" in srv.output, 15), srv.output
        time.sleep(0.2)
        assert "Replaced" not in srv.output, srv.output  # (an old worker still holds its request)
        release.write_text("go")
        assert wait_for(lambda: "Replaced 2 workers (SIGHUP)" in srv.output, 15), srv.output
        slow.join(10)
        assert answered and answered[0][0] == 200, answered
        assert srv.line_time("Replaced 2 workers") >= answered[0][1], srv.output
        assert srv.stop() == 0
    shutting = _pids(srv.output, "Shutting down worker process")
    assert set(old) <= set(shutting) and len(shutting) == 4, srv.output
    assert _pids(srv.output, "Shutting down supervisor process") == [srv.pid], srv.output


def _pids(output: str, text: str) -> list[int]:
    return [int(m) for m in re.findall(re.escape(text) + r" \[(\d+)\]", output)]


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
