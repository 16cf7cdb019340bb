"""A takeover in the middle of a ready batch: the spare serves the rest of that batch before anything newer.

The serving thread polls its epoll set for up to 64 ready connections and serves them in turn. When one of them
blocks and the monitor hands the set to a spare, the connections after it in the batch have waited longest. Before
the fix the spare polled afresh, and epoll (level-triggered) listed first the connections served earlier in the
batch whose clients had already sent their next request: each takeover cost the rest of the batch a round. In the
blocking-mix benchmark that was most of the slowest 1% of fast requests (docs/performance.md).

Order, not timing: /fast answers the order in which it was served.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.support import RawClient, Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.batch_order:app"
BEFORE = 8  # connections ready before the blocking one in the batch
AFTER = 8  # and after it


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def test_the_spare_serves_the_rest_of_a_cut_batch_first(tmp_path):
    gate = str(tmp_path / "gate")
    # A threshold far above the gate's wait and far below the block: one takeover, at a known step.
    with Server(APP, "--port", "0", "--no-access-log", "--blocking-threshold", "0.5",
                env={"BATCH_GATE": gate}) as srv:
        before = [RawClient(srv.addr, timeout=10) for _ in range(BEFORE)]
        after = [RawClient(srv.addr, timeout=10) for _ in range(AFTER)]
        blocker = RawClient(srv.addr, timeout=10)
        holder = RawClient(srv.addr, timeout=10)
        clients = before + after + [blocker, holder]
        try:
            for c in clients:  # every connection accepted and idle in the set
                assert c.request("GET", "/fast").status == 200
            holder.send(_get("/gate"))
            deadline = time.monotonic() + 10
            while not os.path.exists(gate + ".entered"):
                assert time.monotonic() < deadline, "the gate request never started"
                time.sleep(0.001)
            # Ready in this order while the thread is held: one batch [before..., blocker, after...].
            for c in before:
                c.send(_get("/fast"))
            blocker.send(_get("/block"))
            for c in after:
                c.send(_get("/fast"))
            open(gate, "w").close()
            assert holder.read_response().body == b"gate"
            # The batch's first connections are answered before the blocking step; their clients ask again at
            # once, long before the takeover (0.5 s later).
            for c in before:
                assert c.read_response().status == 200
                c.send(_get("/fast"))
            cut = [int(c.read_response().body) for c in after]  # the rest of the cut batch
            again = [int(c.read_response().body) for c in before]  # asked after the batch was polled
            assert blocker.read_response().body == b"block"
        finally:
            for c in clients:
                c.close()
    assert max(cut) < min(again), f"rest of the cut batch served at {sorted(cut)}, later requests at {sorted(again)}"
