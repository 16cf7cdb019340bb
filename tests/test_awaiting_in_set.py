"""A request that awaits (a `def` endpoint's threadpool, a database, ``asyncio.sleep``) keeps its connection in its
epoll set, marked (``Connection._go_async``): taking it out and putting it back cost two epoll_ctl per request, each
a GIL release in the middle of the serving thread's batch. It leaves the set only when the set reports it readable
meanwhile. These check that case: the set is level-triggered, so a connection left in it with bytes waiting would
be reported again and again, a serving thread spinning until the response is done."""

from __future__ import annotations

import os
import socket
import time

from tests.support import Server, build_request

APP = "tests.apps.basic:app"
WAIT = 1.0  # how long the first request awaits (asyncio.sleep in the app)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_request_pipelined_while_one_awaits_is_answered_after_it_without_spinning():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with srv.connect(timeout=WAIT + 10) as c:
            assert c.request("GET", "/").status == 200
            c.send(build_request("GET", f"/asleep?t={WAIT}"))
            time.sleep(0.1)  # (it awaits now)
            before = _cpu_seconds(srv.pid)
            c.send(build_request("GET", "/echo", body=b"second"))  # readable while the first request awaits
            first = c.read_response()
            second = c.read_response()
            used = _cpu_seconds(srv.pid) - before
            assert c.request("GET", "/").status == 200  # and the connection is an ordinary idle one again
    assert (first.status, first.body) == (200, b"aslept")
    assert (second.status, second.body) == (200, b"second")
    # Idle, the process uses a few ms in that second; a thread spinning on the readable connection uses a CPU
    # share (on a machine loaded with 7 runnable threads per 2 cores, still ~0.25 s).
    assert used < 0.1, f"the server used {used:.2f} s of CPU while one request awaited {WAIT} s"


def test_a_client_that_half_closes_while_its_request_awaits_gets_the_response_then_the_close():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with srv.connect(timeout=WAIT + 10) as c:
            c.send(build_request("GET", f"/asleep?t={WAIT}"))
            time.sleep(0.1)
            before = _cpu_seconds(srv.pid)
            c.sock.shutdown(socket.SHUT_WR)  # EOF: readable while the request awaits
            r = c.read_response()
            assert (r.status, r.body) == (200, b"aslept")
            assert c.closed_by_peer(timeout=5), "the server kept a connection whose client had sent EOF"
            used = _cpu_seconds(srv.pid) - before
        assert used < 0.1, f"the server used {used:.2f} s of CPU while one request awaited {WAIT} s"
        assert srv.alive(), srv.output
