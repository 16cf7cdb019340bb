"""Spare threads: a burst of blocked handlers grows the thread count; idle spares then retire, one stays.

The server runs in this process (its main loop in a thread) so the test can shorten the retire delay; the traffic
is still real HTTP over loopback sockets.
"""

import threading
import time

import httpx
import pytest

from hybrid.config import ServerConfig
from hybrid.server import Server


def _wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.mark.timeout(60)
def test_idle_spares_retire_after_a_burst_and_one_stays():
    config = ServerConfig(app="tests.apps.basic:app", port=0, threads=1, access_log=False, lifespan="on")
    server = Server(config)
    server.threads.spare_idle_timeout = 1.0
    server.startup()
    loop_thread = threading.Thread(target=server.serve_forever, daemon=True)
    loop_thread.start()
    try:
        host, port = server.listeners[0].getsockname()[:2]
        url = f"http://{host}:{port}"
        monitor = server.monitor
        assert monitor.thread_count() == 2  # one serving thread + one spare

        # 6 handlers block at once: each takeover brings a new spare.
        outcomes = []  # a failed assert in a client thread would not fail the test: collect, check below

        def blocked():
            try:
                r = httpx.get(url + "/sleep?t=1", timeout=10)
                outcomes.append((r.status_code, r.text))
            except Exception as exc:  # noqa: BLE001
                outcomes.append(repr(exc))

        clients = [threading.Thread(target=blocked) for _ in range(6)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert outcomes == [(200, "slept")] * 6, outcomes
        # the most threads at once (now they may already be retiring: the retire delay is as long as the handlers)
        grown = server.threads.peak
        assert grown >= 6, f"only {grown} threads for 6 blocked handlers ({monitor.takeovers} takeovers)"
        assert monitor.takeovers >= 5

        # Idle now: spares retire after the delay (running their lifespan shutdown) until one is left.
        assert _wait_for(lambda: monitor.spare_count() == 1, 10), (monitor.thread_count(), monitor.spare_count())
        assert monitor.thread_count() == 2
        assert len(server.threads.workers) == 2
        # The server still serves, and a new blocked handler is still covered by the remaining spare.
        with httpx.Client(base_url=url, timeout=5) as c:
            slow = threading.Thread(target=blocked)
            slow.start()
            time.sleep(0.2)
            started = time.perf_counter()
            r = c.get("/")
            elapsed = time.perf_counter() - started
            assert (r.status_code, r.text) == (200, "hello, world")
            assert elapsed < 0.5, f"answered in {elapsed:.2f} s while one handler blocked"
            slow.join()
            assert outcomes[6:] == [(200, "slept")], outcomes
    finally:
        server.request_stop()
        loop_thread.join(15)
    assert not loop_thread.is_alive()
