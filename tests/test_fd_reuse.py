"""Issue 20 item 7: a connection's socket must not be closed while a background write still watches its fd number.

A first ``more_body=True`` chunk is held for 10 ms; then the server writes it and, for a client that does not read,
finishes the write in a background task watching the fd (``add_writer``). If the app then fails, the connection
closes: that task must stop watching first, or the next connection, given the same fd number by the kernel, has its
writes watched by a stale registration (its response stalls for --timeout-write-stall, 60 s) or unwatched by the
stale task's ``remove_writer``. Real server processes over 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.support import RawClient, Server, build_request

APP = "tests.apps.fd_reuse:app"
SIZE = 16 << 20

pytestmark = pytest.mark.timeout(60)


def read_count(c: RawClient, n: int) -> int:
    """Read ``n`` body bytes, counting them (RawClient.read_exact would copy 16 MiB over and over)."""
    got = len(c.buf)
    while got < n:
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    return got


def test_the_next_connection_on_a_reused_fd_is_served_after_a_failed_background_flush():
    with Server(APP, "--port", "0") as srv:
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(srv.addr)
        with RawClient(srv.addr, sock=slow, timeout=5) as a:  # (it reads nothing)
            a.send(build_request("GET", f"/held-then-fail?size={SIZE}"))
            time.sleep(0.5)  # held, flushed in part, the rest in the background; then the app failed
            assert "failed after its first chunk" in srv.output, srv.output
            with RawClient(srv.addr, timeout=5) as b:  # (the kernel gives it the lowest free fd: the one closed)
                t0 = time.monotonic()
                b.send(build_request("GET", f"/big?size={SIZE}"))
                head = b.read_head()
                got = read_count(b, int(head.header("content-length")))
                took = time.monotonic() - t0
        with srv.connect() as c:
            fds = json.loads(c.request("GET", "/fds").body)
    assert [path for path, _ in fds] == ["/held-then-fail", "/big"], fds
    assert fds[0][1] == fds[1][1] >= 0, f"the second connection did not reuse the first one's fd: {fds}"
    assert head.status == 200 and got == SIZE
    assert took < 3, f"16 MiB took {took:.1f} s on loopback"
    assert "Task was destroyed but it is pending" not in srv.output, srv.output  # (no write task outlived it)
