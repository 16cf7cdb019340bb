"""Issue 11: the takeover monitor costs (almost) nothing while nothing blocks, and still reacts when a handler does.

Counts, not timings: the server's shutdown line reports its takeovers and how often the monitor woke.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.support import RawClient, Server, build_request

APP = "tests.apps.correctness:app"

pytestmark = pytest.mark.timeout(60)


def _stats(output: str) -> tuple[int, float]:
    m = re.search(r"; (\d+) takeovers of blocked threads .*?the monitor woke (\d+) times a second", output)
    assert m, output
    return int(m.group(1)), float(m.group(2))


def _plain_load(srv: Server, seconds: float, clients: int = 4) -> int:
    done = []

    def run():
        n = 0
        with RawClient(srv.addr, timeout=10) as c:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                assert c.request("GET", "/plain").status == 200
                n += 1
        done.append(n)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done)


def test_plain_load_wakes_the_monitor_rarely_and_takes_over_nothing():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        served = _plain_load(srv, 2.0)
        assert srv.stop() == 0
    takeovers, wakeups = _stats(srv.output)
    assert served > 500
    assert takeovers == 0, f"{takeovers} takeovers while no handler blocked"
    assert wakeups <= 200, f"the monitor woke {wakeups:.0f} times a second under plain load"


def test_a_blocking_handler_is_still_taken_over_and_the_monitor_speeds_up():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with srv.connect(timeout=10) as sleeper, srv.connect(timeout=10) as fast:
            sleeper.send(build_request("GET", "/block?t=1"))
            time.sleep(0.05)  # well past the slow tick (10 ms): the set has moved on
            started = time.perf_counter()
            assert fast.request("GET", "/fast").status == 200
            waited = time.perf_counter() - started
            assert sleeper.read_response().body == b"blocked"
        assert srv.stop() == 0
    takeovers, wakeups = _stats(srv.output)
    assert takeovers >= 1, srv.output
    assert waited < 0.5, f"a fast request waited {waited * 1000:.0f} ms behind a blocked handler"
    assert wakeups > 200, "after a takeover the monitor should tick fast for a while"
