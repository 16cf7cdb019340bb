"""The monitor's lock is taken by its gc.callbacks hook at the end of every collection. A Python allocation made
while that lock is held (the stack sampler's ``flagged_steps()`` built its tuples under it) could start a
collection in the same thread, whose hook then waited for the lock its own thread held: a self-deadlock, after
which every ``leave()`` of app code, every takeover and every spare start waited forever. Seen under load as a
FastAPI request never answered while all threads were idle (issue 22's lost request). Here the collector runs at
nearly every allocation (tests/apps/gc_every_alloc.py), so one blocking step, which the sampler reads, hits it."""

from __future__ import annotations

import time

import pytest

from .support import RawClient, Server, build_request

APP = "tests.apps.gc_every_alloc:app"


@pytest.mark.timeout(60)
def test_blocking_steps_sampled_while_the_collector_runs_at_every_allocation():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        for round_ in range(3):
            # A blocking step (flagged, its stack sampled) with fast requests beside it, on fresh connections.
            with RawClient(srv.addr, timeout=15) as blocker:
                blocker.send(build_request("GET", "/block?t=0.3"))
                time.sleep(0.1)
                for i in range(3):
                    try:
                        with RawClient(srv.addr, timeout=15) as c:
                            r = c.request("GET", "/")
                    except TimeoutError:
                        pytest.fail(f"round {round_}: fast request {i} not answered in 15 s: the server is "
                                    f"deadlocked\n{srv.output[-2000:]}")
                    assert (r.status, r.body) == (200, b"fast"), r
                try:
                    r = blocker.read_response()
                except TimeoutError:
                    pytest.fail(f"round {round_}: the blocking request not answered in 15 s\n{srv.output[-2000:]}")
                assert (r.status, r.body) == (200, b"blocked"), r
        assert srv.alive(), srv.output
