"""Responses held to the end of a batch of ready connections (hybrid/held_write.py).

A set's owner holds each complete keep-alive response it serves inline and sends them when its batch ends.
Two promises keep that safe: a handler that blocks delays the responses held before it in its batch no longer
than a takeover takes (the spare that gets the set sends them), and a held response the kernel does not take
whole is written as the client reads, before any next response of its connection.
"""

from __future__ import annotations

import socket
import time

from tests.apps.slowread import blob
from tests.support import Server, build_request

APP = "tests.apps.held:app"


def _read_response(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """(head, body, bytes after) of one Content-Length response, read from ``sock`` after ``buf``."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"EOF before a whole head: {buf[:200]!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {len(rest)} of {length} body bytes"
        rest += chunk
    return head, rest[:length], rest[length:]


def check_held_until_takeover(srv, first, fast, slow) -> None:
    """On a server with --blocking-threshold 1.0: /sleep?s=0.15 on ``first`` holds the thread while /fast and
    /sleep?s=4 arrive (one batch); /fast is served before /sleep?s=4 blocks, held, and must be sent by the spare
    that takes the set over (threshold 1 s plus a tick), not when the handler returns 4 s later."""
    first.sendall(build_request("GET", "/sleep?s=0.15"))
    time.sleep(0.05)  # (the thread is in that handler now)
    sent = time.monotonic()
    fast.sendall(build_request("GET", "/fast"))
    slow.sendall(build_request("GET", "/sleep?s=4"))
    _, body, _ = _read_response(first)
    assert body == b"slept"
    _, body, after = _read_response(fast)
    took = time.monotonic() - sent
    assert body == b"fast" and after == b""
    assert took < 2.5, f"/fast answered after {took:.2f} s\n{srv.output[-2000:]}"
    fast.sendall(build_request("GET", "/fast"))  # the connection is whole: nothing twice, nothing left
    _, body, after = _read_response(fast)
    assert body == b"fast" and after == b""
    _, body, _ = _read_response(slow)
    assert body == b"slept"


def ask_unread_then_read_all(sock, size: int, count: int, prefix: str = "") -> None:
    """``count`` requests for a ``size``-byte blob, one at a time and nothing read (each its own batch, so each
    response is held and sent alone until the socket buffers are full and a send takes only part of one); then
    every response must arrive whole and in order, and the connection serve one more request. ``prefix``
    "/later": each held to the end of the loop iteration that completed it instead."""
    for _ in range(count):
        sock.sendall(build_request("GET", f"{prefix}/blob?n={size}"))
        time.sleep(0.01)  # (each request its own batch, none queued behind another)
    buf = b""
    for i in range(count):
        head, body, buf = _read_response(sock, buf)
        assert head.startswith(b"HTTP/1.1 200 "), (i, head[:100])
        assert body == blob(size), f"response {i}: {len(body)} bytes, differs from the blob"
    assert buf == b""
    sock.sendall(build_request("GET", "/fast"))
    _, body, after = _read_response(sock)
    assert body == b"fast" and after == b""


def test_a_blocking_handler_delays_held_responses_only_until_the_takeover():
    # /sleep?s=0.15 holds the thread while the next two requests arrive, so they are one batch; it ends before
    # the monitor's early takeover (a quarter of the threshold while the set has ready connections). The
    # threshold is short next to /sleep?s=4, whose step the monitor then sees blocked.
    with Server(APP, "--port", "0", "--blocking-threshold", "1.0") as srv:
        first = socket.create_connection(srv.addr, timeout=10)
        fast = socket.create_connection(srv.addr, timeout=10)
        slow = socket.create_connection(srv.addr, timeout=10)
        try:
            check_held_until_takeover(srv, first, fast, slow)
        finally:
            for sock in (first, fast, slow):
                sock.close()


def test_a_held_response_the_kernel_did_not_take_is_written_before_the_next():
    # One request at a time, nothing read: every response is held and sent alone at its batch's end, until the
    # socket buffers are full and one send takes only part of it. Every response must then arrive whole and in
    # order once the client reads.
    size, count = 60_000, 120  # (7.2 MB: more than loopback's buffers take, whatever they grow to)
    with Server(APP, "--port", "0") as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)  # (before connect: it sets the window)
        sock.settimeout(15)
        sock.connect(srv.addr)
        try:
            ask_unread_then_read_all(sock, size, count)
        finally:
            sock.close()
