"""Threads: idle connections hold no thread; a blocking handler stalls only its own request."""

import os
import socket
import statistics
import threading
import time

import httpx
import pytest

from .support import RawClient, Server, build_request, free_fds_limit

APP = "tests.apps.basic:app"


def timed_request(addr, target="/", client: RawClient | None = None) -> float:
    t0 = time.perf_counter()
    if client is None:
        with RawClient(addr, timeout=5) as c:
            r = c.request("GET", target)
    else:
        r = client.request("GET", target)
    elapsed = time.perf_counter() - t0
    assert r.status == 200, r
    return elapsed


def server_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


class Sleepers:
    """n raw connections whose requests sit in the app (time.sleep or await) until read()."""

    def __init__(self, addr, n, target):
        self.socks = []
        for _ in range(n):
            c = RawClient(addr, timeout=10)
            c.send(build_request("GET", target))
            self.socks.append(c)
        self.t0 = time.monotonic()

    def read(self):
        out = []
        for c in self.socks:
            out.append(c.read_response())
            c.close()
        return out, time.monotonic() - self.t0


@pytest.mark.timeout(90)
def test_idle_keep_alive_connections_hold_no_threads():
    """--threads 4 and 1,000 idle keep-alive connections: a new client is answered within 100 ms."""
    n = 1000
    free_fds_limit(n + 200)
    with Server(
        APP,
        "--port",
        "0",
        "--threads",
        "4",
        "--timeout-keep-alive",
        "120",
        "--no-access-log",
        "--backlog",
        "2048",
    ) as srv:
        idle = []
        try:
            for _i in range(n):
                s = socket.create_connection(srv.addr, timeout=10)
                idle.append(RawClient(None, sock=s, timeout=10))
            # every connection carries one request, then stays open and idle (keep-alive)
            for c in idle:
                c.send(build_request("GET", "/"))
            for c in idle:
                r = c.read_response()
                assert r.status == 200
            time.sleep(0.2)
            nthreads = server_threads(srv.pid)
            assert nthreads < 64, f"{nthreads} threads for 1,000 idle connections"
            times = [timed_request(srv.addr) for _ in range(10)]
            if max(times) >= 0.100:  # one retry: other processes share this machine
                print(f"first round: {[round(t * 1000, 1) for t in times]} ms; retrying")
                times = [timed_request(srv.addr) for _ in range(10)]
            assert max(times) < 0.100, f"new clients answered in {[round(t * 1000, 1) for t in times]} ms"
            # the idle connections are still open and usable
            for c in idle[:: n // 20]:
                r = c.request("GET", "/")
                assert r.status == 200
        finally:
            for c in idle:
                c.close()
        assert srv.alive(), srv.output


def _isolation_check(srv, sleep_target, fast_target="/", n_sleepers=8, sleep_s=1.0, budget=0.050, attempts=2):
    """Run the isolation measurement; a timing miss is retried once (other processes share this machine)."""
    for attempt in range(attempts):
        try:
            return _isolation_once(srv, sleep_target, fast_target, n_sleepers, sleep_s, budget)
        except AssertionError as exc:
            if attempt == attempts - 1 or "took" not in str(exc):
                raise
            print(f"isolation attempt {attempt + 1} missed the budget, retrying: {exc}")


def _isolation_once(srv, sleep_target, fast_target, n_sleepers, sleep_s, budget):
    # keep-alive connections opened before the handlers block: they live in the epoll sets of workers that
    # are about to be stuck, so answering them quickly needs the takeover, not just a free thread
    pre = [RawClient(srv.addr, timeout=5) for _ in range(8)]
    for c in pre:
        assert c.request("GET", fast_target).status == 200
    sleepers = Sleepers(srv.addr, n_sleepers, sleep_target)
    time.sleep(0.15)  # let them enter the handler
    times = []
    for c in pre:
        times.append(timed_request(srv.addr, fast_target, client=c))
    for _ in range(10):
        times.append(timed_request(srv.addr, fast_target))
    measured_within = time.monotonic() - sleepers.t0
    responses, total = sleepers.read()
    for c in pre:
        c.close()
    assert measured_within < sleep_s, "the measurement must happen while the handlers are blocked"
    assert all(r.status == 200 for r in responses), [r.status for r in responses]
    ms = [round(t * 1000, 1) for t in times]
    assert max(times) < budget, f"fast requests took {ms} ms while {n_sleepers} handlers were blocked"
    # the blocked handlers ran side by side, not one after the other
    assert total < sleep_s * 2.5, f"{n_sleepers} handlers sleeping {sleep_s}s took {total:.2f}s in all"
    return times


@pytest.mark.timeout(60)
def test_blocking_async_handlers_do_not_stall_others():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        _isolation_check(srv, "/sleep?t=1")
        # and again: the threads that took over are recycled properly
        _isolation_check(srv, "/sleep?t=1")
        assert srv.alive()


@pytest.mark.timeout(60)
def test_blocking_handler_single_worker_thread():
    with Server(APP, "--port", "0", "--threads", "1", "--no-access-log") as srv:
        _isolation_check(srv, "/sleep?t=1", n_sleepers=2)


@pytest.mark.timeout(60)
def test_thread_count_is_bounded_by_max_threads():
    with Server(APP, "--port", "0", "--threads", "2", "--max-threads", "4", "--no-access-log") as srv:
        base = server_threads(srv.pid)
        sleepers = Sleepers(srv.addr, 12, "/sleep?t=0.5")
        time.sleep(0.3)
        peak = server_threads(srv.pid)
        responses, total = sleepers.read()
        assert all(r.status == 200 for r in responses)
        # workers + spares never exceed --max-threads (allow the fixed helper threads counted in `base`)
        assert peak - base <= 4, f"threads went from {base} to {peak} with --max-threads 4"
        # at most 4 handlers sleep at once: 12 x 0.5 s need at least 3 rounds
        assert total >= 1.4, f"12 blocking handlers finished in {total:.2f} s: more than 4 threads ran them"
        assert srv.alive()


@pytest.mark.timeout(60)
def test_async_handlers_interleave_on_one_thread():
    """Awaiting handlers do not hold the worker: 10 x 0.5 s asyncio.sleep on one thread finish together."""
    with Server(APP, "--port", "0", "--threads", "1", "--max-threads", "1", "--no-access-log") as srv:
        sleepers = Sleepers(srv.addr, 10, "/asleep?t=0.5")
        time.sleep(0.1)
        t = timed_request(srv.addr)
        responses, total = sleepers.read()
        assert all(r.status == 200 and r.body == b"aslept" for r in responses)
        assert total < 1.5, f"10 concurrent 0.5 s awaits took {total:.2f} s on one thread"
        assert t < 0.1


@pytest.mark.timeout(60)
def test_concurrent_clients_correct_responses():
    with Server(APP, "--port", "0", "--threads", "2", "--no-access-log") as srv:
        errors = []

        def worker(k):
            try:
                with httpx.Client(base_url=srv.url, timeout=10) as c:
                    for i in range(30):
                        body = b"client-%d-req-%d" % (k, i) * (i + 1)
                        r = c.post("/echo", content=body)
                        if r.content != body:
                            errors.append((k, i, r.status_code, r.content[:50]))
            except Exception as exc:  # noqa: BLE001
                errors.append((k, repr(exc)))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(50)
        assert not errors, errors[:5]
        assert srv.alive()


@pytest.mark.timeout(60)
def test_latency_without_blocking_is_low():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with RawClient(srv.addr) as c:
            times = [timed_request(srv.addr, client=c) for _ in range(200)]
        assert statistics.median(times) < 0.005, f"median {statistics.median(times) * 1000:.2f} ms"


@pytest.mark.timeout(60)
def test_blocking_threshold_option_is_used():
    """With a 5 s threshold nothing is taken over during a 1 s block: one worker thread stalls its clients."""
    with Server(APP, "--port", "0", "--threads", "1", "--blocking-threshold", "5", "--no-access-log") as srv:
        sleepers = Sleepers(srv.addr, 1, "/sleep?t=1")
        time.sleep(0.15)
        t = timed_request(srv.addr)
        responses, _ = sleepers.read()
        assert responses[0].status == 200
        assert t > 0.5, f"answered in {t * 1000:.1f} ms although no takeover may happen before 5 s"


@pytest.mark.timeout(60)
def test_pipelined_request_behind_blocking_handler():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with RawClient(srv.addr, timeout=10) as c:
            c.send(build_request("GET", "/sleep?t=0.5") + build_request("GET", "/"))
            t0 = time.monotonic()
            r1 = c.read_response()
            r2 = c.read_response()
            assert (r1.status, r1.body) == (200, b"slept")
            assert (r2.status, r2.body) == (200, b"hello, world")
            assert time.monotonic() - t0 < 2
        # other clients were not held up meanwhile
        assert timed_request(srv.addr) < 0.1


@pytest.mark.timeout(60)
def test_client_not_reading_large_response_does_not_stall_others():
    """A client that requests 64 MB and does not read it must not hold up other clients."""
    with Server(APP, "--port", "0", "--threads", "2", "--no-access-log") as srv:
        hogs = []
        for _ in range(2):
            c = RawClient(srv.addr, timeout=10)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.send(build_request("GET", "/big?n=64000000"))
            hogs.append(c)
        time.sleep(0.3)
        try:
            times = [timed_request(srv.addr) for _ in range(10)]
            assert max(times) < 0.1, f"fast requests took {[round(t * 1000, 1) for t in times]} ms"
        finally:
            for c in hogs:
                c.close()
        assert timed_request(srv.addr) < 0.1
        assert srv.alive()


@pytest.mark.timeout(60)
def test_slow_uploads_do_not_hold_the_worker():
    """Apps awaiting receive() for a body that trickles in leave the worker free for other clients."""
    with Server(APP, "--port", "0", "--threads", "1", "--no-access-log") as srv:
        uploaders = []
        for _ in range(4):
            c = RawClient(srv.addr, timeout=10)
            c.send(build_request("POST", "/echo", headers=[("Content-Length", "10")]) + b"12345")
            uploaders.append(c)
        time.sleep(0.2)  # every app is now waiting in receive() for the rest of its body
        times = [timed_request(srv.addr) for _ in range(10)]
        for c in uploaders:
            c.send(b"67890")
            r = c.read_response()
            assert (r.status, r.body) == (200, b"1234567890")
            c.close()
        assert max(times) < 0.05, f"fast requests took {[round(t * 1000, 1) for t in times]} ms"
