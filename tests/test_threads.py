"""Threads: idle connections hold no thread; a blocking handler stalls only its own request."""

import os
import re
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
    """--threads 4 and 1,000 idle keep-alive connections: no thread more than at rest, and a new client is answered
    within 100 ms. --max-threads is far above 1,000, so the server's own cap cannot be what keeps the count down."""
    n = 1000
    free_fds_limit(n + 200)
    with Server(
        APP,
        "--port",
        "0",
        "--threads",
        "4",
        "--max-threads",
        "1100",
        "--timeout-keep-alive",
        "120",
        "--no-access-log",
        "--backlog",
        "2048",
    ) as srv:
        at_rest = server_threads(srv.pid)
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
                assert (r.status, r.body) == (200, b"hello, world")
                assert (r.header("connection") or "").lower() != "close"
            time.sleep(0.2)
            nthreads = server_threads(srv.pid)
            # The 4 serving threads take turns on the GIL, so a step now and then outlasts the 1 ms threshold and a
            # takeover starts a spare: allow one such spare per serving thread (not one thread per connection).
            assert nthreads <= at_rest + 4, f"{nthreads} threads for 1,000 idle connections ({at_rest} at rest)"
            # New clients are answered promptly. Measured as a distribution, not one worst sample: what this
            # catches (idle connections costing a thread or a scan each) slows every request, while a neighbour
            # process on this shared machine delays one now and then.
            times = sorted(timed_request(srv.addr) for _ in range(20))
            ms = [round(t * 1000, 1) for t in times]
            assert statistics.median(times) < 0.020 and times[17] < 0.100, f"new clients answered in {ms} ms"
            # the idle connections are still open and usable
            for c in idle[:: n // 20]:
                r = c.request("GET", "/")
                assert (r.status, r.body) == (200, b"hello, world")
        finally:
            for c in idle:
                c.close()
        assert srv.alive(), srv.output


class IsolationMiss(AssertionError):
    """A fast request missed its time budget, or the blocked handlers did not run side by side (timing)."""


def _isolation_check(start_server, sleep_target, fast_target="/", n_sleepers=8, sleep_s=1.0, budget=0.050, rounds=1,
                     expect_fast=None):
    """The isolation measurement on a fresh server (`start_server()` returns a new, not started, Server); `rounds`
    > 1 repeats it on the same server once the sleepers are done (threads that took over are recycled). Measured
    once: no retry (see _isolation_once for why its bounds hold on a shared machine)."""
    with start_server() as srv:
        return [_isolation_once(srv, sleep_target, fast_target, n_sleepers, sleep_s, budget, expect_fast)
                for _ in range(rounds)]


def _isolation_once(srv, sleep_target, fast_target, n_sleepers, sleep_s, budget, expect_fast):
    # Keep-alive connections, opened first, live in the epoll set of the thread that is about to be stuck:
    # answering them needs the takeovers, not just a free thread. The sleepers' connections are open and served
    # once already, so their requests arrive on connections in that same set.
    pre = [RawClient(srv.addr, timeout=5) for _ in range(8)]
    sleepers = [RawClient(srv.addr, timeout=sleep_s + 10) for _ in range(n_sleepers)]
    try:
        for c in pre + sleepers:
            r = c.request("GET", fast_target)
            assert r.status == 200 and (expect_fast is None or r.body == expect_fast), r
        # The fast requests go out together with the blocking ones, half just before and half just after them, and
        # are timed from that moment: the whole chain of takeovers the sleepers cause is inside the measurement.
        half = len(pre) // 2
        t_start = time.perf_counter()
        for c in pre[:half]:
            c.send(build_request("GET", fast_target))
        for c in sleepers:
            c.send(build_request("GET", sleep_target))
        for c in pre[half:]:
            c.send(build_request("GET", fast_target))
        times = []
        for c in pre:
            r = c.read_response()
            times.append(time.perf_counter() - t_start)
            assert r.status == 200 and (expect_fast is None or r.body == expect_fast), r
        # then new clients, one after another, while the handlers are still blocked
        for _ in range(10):
            times.append(timed_request(srv.addr, fast_target))
        measured_within = time.perf_counter() - t_start
        responses = [c.read_response() for c in sleepers]
        total = time.perf_counter() - t_start
    finally:
        for c in pre + sleepers:
            c.close()
    assert all(r.status == 200 for r in responses), [(r.status, r.body[:100]) for r in responses]
    ms = [round(t * 1000, 1) for t in times]
    # What isolation failing looks like: a fast request queued behind a blocked handler waits for it, the whole
    # sleep_s. So no fast request may take a quarter of that (one sample at the mercy of a neighbour process is
    # ~50 ms here, far below), and most must be within `budget`: the takeovers are quick, not just eventual (the
    # 4 sent after the sleepers wait for the whole chain of takeovers, ~50 ms when the machine is busy).
    if max(times) >= sleep_s / 4:
        raise IsolationMiss(f"a fast request waited for a blocked handler: {ms} ms (the first 8 timed from the "
                            f"moment {n_sleepers} handlers started blocking)")
    if statistics.median(times) >= budget:
        raise IsolationMiss(f"fast requests took {ms} ms")
    if measured_within >= sleep_s * 0.8:
        raise IsolationMiss(f"measured until {measured_within:.2f} s: not while the handlers were blocked")
    # the blocked handlers ran side by side (one round), not one after the other
    if total >= sleep_s * 1.5:
        raise IsolationMiss(f"{n_sleepers} handlers sleeping {sleep_s}s took {total:.2f}s in all")
    return times


def _fresh(*args):
    return lambda: Server(APP, "--port", "0", "--no-access-log", *args)


@pytest.mark.timeout(60)
def test_blocking_async_handlers_do_not_stall_others():
    # and a second round on the same server: the threads that took over are recycled properly
    _isolation_check(_fresh(), "/sleep?t=1", expect_fast=b"hello, world", rounds=2)


@pytest.mark.timeout(60)
def test_blocking_handler_single_worker_thread():
    _isolation_check(_fresh("--threads", "1"), "/sleep?t=1", n_sleepers=2, expect_fast=b"hello, world")


def _task_ids(pid: int) -> set[int]:
    return {int(t) for t in os.listdir(f"/proc/{pid}/task")}


class ThreadSampler(threading.Thread):
    """Samples a process's thread count every few ms until stop(); `.peak` is the largest count seen."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._halt = pid, 0, threading.Event()
        self.start()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, server_threads(self.pid))
            time.sleep(0.003)

    def stop(self) -> int:
        self._halt.set()
        self.join(5)
        return self.peak


@pytest.mark.timeout(60)
def test_thread_count_is_bounded_by_max_threads():
    """--threads 2 --max-threads 4: at most 4 threads serve (run app code), however many handlers block."""
    with Server(APP, "--port", "0", "--threads", "2", "--max-threads", "4", "--no-access-log") as srv:
        # At rest: main, monitor, 2 serving threads and 1 spare; the helpers are everything but those 3.
        base = server_threads(srv.pid)
        helpers = base - 3
        sampler = ThreadSampler(srv.pid)
        # 9 handlers blocking 0.4 s each: with 4 threads they need 3 rounds (>= 1.2 s); 5 threads would do it in 2.
        sleepers = Sleepers(srv.addr, 9, "/sleep?t=0.4")
        responses, total = sleepers.read()
        peak = sampler.stop()
        assert all(r.status == 200 and r.body == b"slept" for r in responses), responses
        # A spare is started by a short-lived helper thread, so one more may show up now and then.
        assert peak - helpers <= 4 + 1, f"{peak} threads at peak, {helpers} of them helpers, with --max-threads 4"
        assert total >= 3 * 0.4 - 0.05, f"9 blocking handlers finished in {total:.2f} s: more than 4 threads ran them"
        assert total < 3 * 0.4 + 1.0, f"9 blocking handlers took {total:.2f} s: fewer than 4 threads ran them"
        assert srv.alive()
    m = re.search(r"\((\d+) threads at most\)", srv.output)
    assert m and int(m.group(1)) == 4, f"the server's own count of threads at most: {m and m.group(0)}\n{srv.output}"
    assert "All 4 threads are busy" in srv.output, srv.output


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


@pytest.mark.timeout(60)
def test_the_isolation_check_fails_when_nothing_is_taken_over():
    """The check catches what it is for: with a 5 s threshold nothing is taken over during a 1 s block, and the
    fast requests behind the blocked handlers wait for them."""
    with pytest.raises(IsolationMiss, match="waited for a blocked handler"):
        _isolation_check(_fresh("--threads", "1", "--blocking-threshold", "5"), "/sleep?t=1", n_sleepers=2,
                         expect_fast=b"hello, world")
