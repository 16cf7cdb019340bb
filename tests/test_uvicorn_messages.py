"""The server's own messages as a uvicorn user meets them (issue 23): each said once, naming what it is about."""

import asyncio
import signal

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from .support import Server, run_cli

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
