"""Worker processes (issue 19, item 4): a SIGHUP that half fails loses nothing, the supervisor keeps watching its
workers while a generation starts, SIGTERM drains the shared listen queue once, the restart backoff of a worker
that keeps failing at startup grows to its cap (and says what fails), a worker killed during the first start
gives a startup exit code.

Real server processes (tests/apps/sup_app.py) driven over loopback; stopped by PID, their process group SIGKILLed
at teardown (tests/apps/sup_support.py).
"""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from hybrid.restart_backoff import RestartBackoff
from hybrid.shutdown import EXIT_STARTUP_FAILED
from tests.apps.sup_support import (
    ANSWERED,
    APP,
    BackgroundRequest,
    Load,
    assert_no_orphans,
    entered_pid,
    is_running,
    launcher,
    wait_for,
    worker_pids,
)

pytestmark = pytest.mark.timeout(60)

DELAY_RE = re.compile(r"Worker \[\d+\] died unexpectedly \(exit code 3\) before it was ready: (\d+) failed starts "
                      r"in a row \(see its error above\); restarting in ([\d.]+) s")


@pytest.fixture
def launch(tmp_path):
    yield from launcher(tmp_path)


def _workers(launch, tmp_path, *extra):
    flag = tmp_path / "fail-if"
    srv = launch(APP, "--port", "0", "--no-access-log", "--workers", "2", *extra, env={"SUP_FAIL_IF": str(flag)})
    assert wait_for(lambda: len(worker_pids(srv)) == 2, 5), f"2 workers expected:\n{srv.output}"
    return srv, flag


def test_half_failed_sighup_loses_nothing_and_keeps_the_old_workers(launch, tmp_path):
    """SIGHUP where one new worker starts and serves and the other fails its startup 6 s later: the one that
    started drains the requests it holds (8 s each, in flight when the other fails: none lost, it is not
    SIGKILLed), and the old workers keep serving."""
    srv, flag = _workers(launch, tmp_path)
    old = worker_pids(srv)
    flag.write_text("one")
    fast = Load(srv.addr, threads=2, tag="F").start()
    srv.signal(signal.SIGHUP)
    new = wait_for(lambda: {r.pid for r in fast.answered} - old, 15)
    assert new, f"no new worker answered:\n{srv.output[-3000:]}"
    held: list[BackgroundRequest] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(held) < 40:  # until one is held by the new worker (bounded)
        held.append(BackgroundRequest(srv.addr, f"/slow?t=8&id=held{len(held)}"))
        time.sleep(0.05)
        if any(entered_pid(srv.markers, f"held{i}") in new for i in range(len(held))):
            break
    assert any(entered_pid(srv.markers, f"held{i}") in new for i in range(len(held))), (
        "no 8 s request reached the new worker before the other one failed: the scenario did not happen")
    assert "New workers failed" not in srv.output, "the other new worker failed too early: the scenario did not happen"
    assert wait_for(lambda: "New workers failed to start (SIGHUP" in srv.output, 10), srv.output[-3000:]
    for request in held:
        request.join(15)
    fast.stop()
    lost = [(r.rid, r.kind, r.detail) for r in (q.rec for q in held) if r is None or r.kind != ANSWERED]
    assert not lost, f"requests held by the new worker were lost: {lost}"
    fast.assert_none_lost("half-failed SIGHUP")
    assert all(is_running(p) for p in old) and worker_pids(srv) >= old, srv.output[-3000:]
    assert srv.stop() == 0, srv.output[-3000:]
    assert_no_orphans(srv)


def test_supervisor_replaces_a_dead_worker_while_a_generation_starts(launch, tmp_path):
    """While a SIGHUP's new workers take 3 s to start, an old worker killed by SIGKILL is noticed and replaced at
    once: the supervisor loop does not wait for the generation."""
    srv, flag = _workers(launch, tmp_path)
    flag.write_text("slow")
    srv.signal(signal.SIGHUP)
    time.sleep(0.3)
    victim = min(worker_pids(srv))
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: f"Worker [{victim}] died unexpectedly" in srv.output, 1.5), (
        f"death not noticed within 1.5 s (after {time.monotonic() - t0:.1f} s):\n{srv.output[-3000:]}")
    assert "Replaced 2 workers" not in srv.output, "the generation was ready already: the test proves nothing"
    assert wait_for(lambda: "Replaced 2 workers (SIGHUP)" in srv.output, 15), srv.output[-3000:]
    assert srv.stop() == 0, srv.output[-3000:]


def test_sigterm_with_workers_resets_no_queued_connection(launch, tmp_path):
    """Three shutdowns under a stream of fresh connections: each connection is answered or refused, never reset
    (the workers leave the shared socket, then the last one drains its queue, as one process does)."""
    for round_ in range(3):
        srv = launch(APP, "--port", "0", "--no-access-log", "--workers", "2")
        assert wait_for(lambda srv=srv: len(worker_pids(srv)) == 2, 5), srv.output
        load = Load(srv.addr, threads=4, tag=f"R{round_}-").start()
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        rc = srv.wait(15)
        load.stop()
        assert rc == 0, f"round {round_}: exit code {rc}:\n{srv.output[-3000:]}"
        assert load.refused, f"round {round_}: the load did not outlast the listener: {load.summary()}"
        load.assert_none_lost(f"round {round_}: SIGTERM with --workers 2")


def test_backoff_of_a_worker_failing_at_startup_doubles_and_says_why(launch, tmp_path):
    """Once every new worker fails its startup, each restart waits twice as long as the one before (0.1, 0.2, 0.4,
    0.8 s), and the supervisor says how many failed in a row; the worker's own error names the cause."""
    srv, flag = _workers(launch, tmp_path)
    flag.write_text("all")
    os.kill(min(worker_pids(srv)), signal.SIGKILL)
    assert wait_for(lambda: len(DELAY_RE.findall(srv.output)) >= 4, 20), srv.output[-3000:]
    seen = [(int(n), float(d)) for n, d in DELAY_RE.findall(srv.output)][:4]
    assert seen == [(2, 0.2), (3, 0.4), (4, 0.8), (5, 1.6)], seen  # (the SIGKILL was the first failure: 0.1 s)
    assert f"{flag} exists" in srv.output, "the worker's startup error is not in the log"
    srv.stop()


def test_backoff_reaches_its_cap_and_stays_there():
    """A worker that always fails at startup about 1.3 s after it is started: the delays double up to CAP and stay
    there (they never fall back to FIRST because two restarts are far apart), for a simulated 10 minutes."""
    backoff, now, delays = RestartBackoff(), 0.0, []
    while now < 600:
        delay = backoff.failed(now, stable=False)
        delays.append(delay)
        now += delay
        backoff.restarted(now)
        now += 1.3  # its failure
    assert delays[:8] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, RestartBackoff.CAP], delays[:8]
    assert all(d == RestartBackoff.CAP for d in delays[7:]), delays
    assert backoff.failed(now, stable=True) == RestartBackoff.FIRST  # (a worker that served STABLE s starts over)


def test_worker_killed_during_first_start_exits_startup_failed(launch, tmp_path):
    """A worker killed by SIGKILL while the first generation starts: the supervisor exits 3 (startup failed),
    naming the signal, not 247 (-9 as an exit status)."""
    flag = tmp_path / "fail-if"
    flag.write_text("slow")
    srv = launch(APP, "--port", "0", "--no-access-log", "--workers", "2", env={"SUP_FAIL_IF": str(flag)},
                 ready=False)
    kids = wait_for(lambda: [p for p in psutil.Process(srv.pid).children()
                             if "spawn_main" in " ".join(p.cmdline())], 5)
    assert kids, "no worker process started"
    time.sleep(0.5)
    kids[0].kill()
    rc = srv.wait(15)
    assert rc == EXIT_STARTUP_FAILED, f"exit code {rc}:\n{srv.output[-3000:]}"
    assert "killed by SIGKILL" in srv.output, srv.output[-3000:]
    assert_no_orphans(srv)
