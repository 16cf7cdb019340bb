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
        def blocked():
            assert httpx.get(url + "/sleep?t=1", timeout=10).status_code == 200

        clients = [threading.Thread(target=blocked) for _ in range(6)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        grown = monitor.thread_count()
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
            assert c.get("/").status_code == 200
            assert time.perf_counter() - started < 0.5
            slow.join()
    finally:
        server.request_stop()
        loop_thread.join(15)
    assert not loop_thread.is_alive()
