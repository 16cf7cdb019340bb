"""Lifespans that never finish (issue 19, item 2): startup is bounded (--timeout-startup) and stoppable, nothing is
accepted before it completes, a failing startup runs once; lifespan shutdown is bounded by
--timeout-graceful-shutdown, and the exit code says it was cut short. One process and a supervisor with 2 workers.

Real server processes (tests/apps/lifespan_stuck.py) over loopback; stopped by PID (tests/support.py).
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from hybrid.shutdown import EXIT_CUT_SHORT, EXIT_STARTUP_FAILED

from .apps.sup_support import group_members, kill_group, wait_for
from .support import Server

pytestmark = pytest.mark.timeout(40)

STUCK = "tests.apps.lifespan_stuck:app"
MODES = [pytest.param([], id="single"), pytest.param(["--workers", "2"], id="workers2")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(tmp_path, event: str) -> list[str]:
    path = tmp_path / "events.log"
    return [line for line in path.read_text().splitlines() if line.startswith(event)] if path.exists() else []


def _launch(tmp_path, *args, env, ready=True) -> Server:
    srv = Server(STUCK, "--no-access-log", *args, env={"MARKERS": str(tmp_path), **env}, ready=ready)
    return srv.start()


def _cleanup(srv: Server) -> None:
    srv.stop(timeout=2)
    kill_group(srv.pid)  # (workers of a supervisor that did not exit)


@pytest.mark.parametrize("mode", MODES)
def test_stuck_startup_accepts_nothing_and_sigterm_ends_it(tmp_path, mode):
    """While lifespan startup has not completed, the port refuses connections (a client is never left
    unanswered), and SIGTERM ends the startup: exit 4 (cut short) within a second or two, no process left."""
    port = _free_port()
    srv = _launch(tmp_path, "--port", str(port), *mode, env={"STUCK": "startup"}, ready=False)
    try:
        assert wait_for(lambda: _events(tmp_path, "startup"), 10), f"startup never began:\n{srv.output}"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait(5)
        took = time.monotonic() - t0
        assert rc is not None, f"still running 5 s after SIGTERM during a stuck startup:\n{srv.output}"
        assert rc == EXIT_CUT_SHORT, f"exit code {rc}:\n{srv.output}"
        assert took < 3, f"took {took:.1f} s"
        assert "Stopped by a signal during application startup" in srv.output, srv.output
        assert wait_for(lambda: not group_members(srv.pid), 3), "processes left behind"
    finally:
        _cleanup(srv)


@pytest.mark.parametrize("mode", MODES)
def test_startup_past_timeout_startup_exits_3(tmp_path, mode):
    """--timeout-startup 1 with a startup that never completes: exit 3 within about that, saying why."""
    srv = _launch(tmp_path, "--port", "0", "--timeout-startup", "1", *mode, env={"STUCK": "startup"}, ready=False)
    try:
        t0 = time.monotonic()
        rc = srv.wait(8)
        took = time.monotonic() - t0
        assert rc is not None, f"still running 8 s after start with --timeout-startup 1:\n{srv.output}"
        assert rc == EXIT_STARTUP_FAILED, f"exit code {rc}:\n{srv.output}"
        assert "did not complete within 1 s (--timeout-startup" in srv.output, srv.output
        assert took < 6, f"took {took:.1f} s"
        assert wait_for(lambda: not group_members(srv.pid), 3), "processes left behind"
    finally:
        _cleanup(srv)


def test_failing_startup_runs_once(tmp_path):
    """A startup that fails is not repeated in the other loops (2 loops here: --threads 1 and its spare): one
    startup, one error line, exit 3."""
    flag = tmp_path / "fail"
    flag.write_text("")
    srv = _launch(tmp_path, "--port", "0", env={"FAIL_IF": str(flag)}, ready=False)
    try:
        rc = srv.wait(10)
        assert rc == EXIT_STARTUP_FAILED, f"exit code {rc}:\n{srv.output}"
        assert len(_events(tmp_path, "startup")) == 1, _events(tmp_path, "startup")
        assert srv.output.count("exists") == 1, srv.output
    finally:
        _cleanup(srv)


@pytest.mark.parametrize("mode", MODES)
def test_stuck_shutdown_is_bounded_and_exits_4(tmp_path, mode):
    """Lifespan shutdown that never completes: with --timeout-graceful-shutdown 1 the process (and every worker)
    exits within the bound (lifespan shutdown included), with exit code 4 (cut short)."""
    srv = _launch(tmp_path, "--port", "0", "--timeout-graceful-shutdown", "1", *mode,
                  env={"STUCK": "shutdown"})
    try:
        if mode:
            assert wait_for(lambda: len(_events(tmp_path, "startup")) >= 2 * 3, 10), srv.output
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = srv.wait(8)
        took = time.monotonic() - t0
        assert rc is not None, f"still running 8 s after SIGTERM (--timeout-graceful-shutdown 1):\n{srv.output}"
        assert rc == EXIT_CUT_SHORT, f"exit code {rc}:\n{srv.output}"
        assert took < 1 + 0.75, f"took {took:.1f} s"
        assert _events(tmp_path, "shutdown"), "lifespan shutdown never began"
        assert "lifespan shutdown did not complete" in srv.output, srv.output
        assert "killing it" not in srv.output, srv.output  # (the workers end by themselves, in time)
        assert wait_for(lambda: not group_members(srv.pid), 3), "processes left behind"
    finally:
        _cleanup(srv)
