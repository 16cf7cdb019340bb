"""Large responses to slow readers, and clients that leave mid-body (issue 19, items 1 and 5).

A response larger than the kernel takes in one send is written as the client reads. Until its last byte is
written the connection is busy: no idle sweep closes it, no pipelined response starts inside it, only
--timeout-write-stall ends it, and the access log reports the body bytes the kernel took. The readers here
have a small receive buffer and read in paced steps, so each response takes a few seconds to arrive.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from tests.apps.slowread import blob
from tests.support import Server, build_request

APP = "tests.apps.slowread:app"
RCVBUF = 64 * 1024


def _slow_client(addr, *requests: bytes) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)  # (before connect: it sets the window)
    sock.connect(addr)
    sock.sendall(b"".join(requests))
    return sock


def _read_paced(sock: socket.socket, want: int, step: int, interval: float, limit: float, end: bytes = b"") -> bytes:
    """Read ``step`` bytes every ``interval`` seconds until ``want`` bytes arrived, EOF, what came ends with
    ``end`` (if given), or ``limit`` seconds."""
    got = bytearray()
    sock.settimeout(interval + 5)
    deadline = time.monotonic() + limit
    while len(got) < want and time.monotonic() < deadline and not (end and got.endswith(end)):
        time.sleep(interval)
        try:
            chunk = sock.recv(min(step, want - len(got)))
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        got += chunk
    return bytes(got)


def _read_response_paced(sock: socket.socket, step: int, interval: float, limit: float) -> bytes:
    """One whole Content-Length response (or what came of it before EOF), read in paced steps."""
    raw = b""
    sock.settimeout(5)
    while b"\r\n\r\n" not in raw:  # (the head byte by byte: nothing of the body is taken before its pace)
        chunk = sock.recv(1)
        if not chunk:
            return raw
        raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0]
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    return raw + _read_paced(sock, length, step, interval, limit)


def _split_response(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, body, what follows) of the first response in ``raw`` (Content-Length framed)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {raw[:200]!r}"
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    return head, rest[:length], rest[length:]


def _first_difference(got: bytes, want: bytes) -> str:
    at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), None)
    if at is not None:
        return f"differs at offset {at}: {got[at:at + 40]!r}"
    return f"{len(got)} bytes of {len(want)}"


def _access_records(output: str, path: str) -> list[dict]:
    records = []
    for line in output.splitlines():
        start = line.find("{")
        if start >= 0 and f'"path":"{path}' in line:
            records.append(json.loads(line[start:]))
    return records


# (keep-alive option, body size, bytes per step, seconds per step): each read takes 3-8 s, well past the
# keep-alive timeout, which on the old code closed the connection mid-write once the kernel held the rest.
READERS = [
    pytest.param(["--timeout-keep-alive", "1"], 8 << 20, 64 << 10, 0.025, id="keepalive1-2.6MBps"),
    pytest.param(["--timeout-keep-alive", "1"], 8 << 20, 32 << 10, 0.02, id="keepalive1-1.6MBps"),
    pytest.param([], 10_000_000, 64 << 10, 0.05, id="keepalive5-1.3MBps"),
]


@pytest.mark.parametrize(("options", "size", "step", "interval"), READERS)
def test_a_slow_steady_reader_gets_every_byte(options, size, step, interval):
    with Server(APP, "--port", "0", "--access-log-format", "json", *options) as srv:
        sock = _slow_client(srv.addr, build_request("GET", f"/blob?n={size}"))
        t0 = time.monotonic()
        raw = _read_response_paced(sock, step, interval, limit=30)
        took = time.monotonic() - t0
        # The connection is still usable for a next request (asked at once: --timeout-keep-alive 1 is short).
        sock.sendall(build_request("GET", "/small"))
        again = _read_response_paced(sock, 1 << 20, 0.0, limit=5)
        assert again, f"closed after {len(raw)} bytes of the {size}-byte response:\n{srv.output[-2000:]}"
        _, small, _ = _split_response(again)
        sock.close()
        head, body, after = _split_response(raw)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert body == blob(size), _first_difference(body, blob(size))
        assert after == b""
        assert took > 3, f"read in {took:.1f} s: not slow enough to outlast the keep-alive timeout"
        assert small == b"small"
        deadline = time.monotonic() + 5
        while not _access_records(srv.output, "/small") and time.monotonic() < deadline:
            time.sleep(0.05)
        [record] = _access_records(srv.output, "/blob")
        assert (record["status"], record["bytes"]) == (200, size)


def test_a_pipelined_response_comes_after_the_last_byte_of_the_one_before():
    size = 8 << 20
    with Server(APP, "--port", "0", "--no-access-log", "--timeout-keep-alive", "1") as srv:
        sock = _slow_client(srv.addr, build_request("GET", f"/blob?n={size}"), build_request("GET", "/small"))
        raw = _read_paced(sock, 1 << 30, 64 << 10, 0.025, limit=30)  # to EOF: nothing follows the second
        sock.close()
    head, body, after = _split_response(raw)
    assert body == blob(size), _first_difference(body, blob(size))
    head2, small, tail = _split_response(after)
    assert head2.startswith(b"HTTP/1.1 200 ") and small == b"small" and tail == b"", after[:300]


def test_a_stalled_write_is_cut_by_the_write_stall_timeout_and_logged_as_sent():
    size = 10_000_000
    with Server(APP, "--port", "0", "--access-log-format", "json", "--timeout-write-stall", "1",
                "--timeout-keep-alive", "30") as srv:
        sock = _slow_client(srv.addr, build_request("GET", f"/blob?n={size}"))
        got = _read_paced(sock, 1_000_000, 64 << 10, 0.01, limit=10)  # some, then nothing
        time.sleep(2.5)  # stall (1 s) + the check after it, with room for a slow machine
        got += _read_paced(sock, 1 << 30, 1 << 20, 0.0, limit=10)  # what the kernels held, then EOF
        sock.close()
        deadline = time.monotonic() + 5
        while not _access_records(srv.output, "/blob") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "--timeout-write-stall" in srv.output
        [record] = _access_records(srv.output, "/blob")
    _, body, _ = _split_response(got)
    assert len(body) < size and body == blob(size)[:len(body)]
    # The log reports what the kernel took: what the client got, and no more than the buffers between could hold.
    assert len(body) <= record["bytes"] < size, (record, len(body))


def test_shutdown_waits_for_a_stalled_write_no_longer_than_the_write_stall_timeout():
    with Server(APP, "--port", "0", "--no-access-log", "--timeout-write-stall", "2") as srv:
        sock = _slow_client(srv.addr, build_request("GET", f"/blob?n={10_000_000}"))
        sock.settimeout(10)
        assert sock.recv(1) == b"H"  # the response has begun: the kernel buffers fill, then the server waits
        t0 = time.monotonic()  # for this reader, who reads no more
        srv.signal(signal.SIGTERM)
        code = srv.wait(15)
        took = time.monotonic() - t0
        sock.close()
    assert code == 0, srv.output[-2000:]
    # The stall is counted from the client's last progress (the kernel buffers filling, right at t0), looked at
    # every 0.5 s; counted per whole period from the first look, which saw that filling, it took 4 s.
    assert took < 2 + 0.5 + 1, f"shutdown took {took:.1f} s with --timeout-write-stall 2"


# -- clients that leave mid-body (issue 19, item 5) ----------------------------------------------------------------

LEAVERS = 20


def _leave_mid_body(addr, count: int) -> None:
    """``count`` clients each send a head announcing 100 kB of body and 1 kB of it, then close."""
    for _ in range(count):
        with socket.create_connection(addr) as sock:
            sock.sendall(build_request("POST", "/upload", headers=[("Content-Length", "100000")]) + b"x" * 1000)
            time.sleep(0.02)  # the app is waiting in receive() for the rest when the client leaves


def _get_body(addr, target: str) -> bytes:
    with socket.create_connection(addr, timeout=5) as sock:
        sock.sendall(build_request("GET", target, headers=[("Connection", "close")]))
        return _split_response(_read_paced(sock, 1 << 20, 1 << 20, 0.0, limit=5))[1]


def test_clients_that_leave_mid_body_are_not_kept_alive_by_the_body_timer():
    # --timeout-request-body is 30 s by default: its timer held each connection object that long.
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        assert _get_body(srv.addr, "/live") == b"1"  # (the connection asking)
        _leave_mid_body(srv.addr, LEAVERS)
        deadline = time.monotonic() + 5
        while (live := _get_body(srv.addr, "/live")) != b"1" and time.monotonic() < deadline:
            time.sleep(0.2)  # (the server closes each as it notices: a few loop turns)
        assert live == b"1", f"{int(live) - 1} connection objects of {LEAVERS} clients gone for seconds"


def test_a_client_leaving_mid_body_is_not_logged_as_an_app_error():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        _leave_mid_body(srv.addr, LEAVERS)
        _get_body(srv.addr, "/live")  # (after the leavers: their connections were served first)
        quiet = srv.output
        # A genuine app bug still is: a whole body read, and no response.
        with socket.create_connection(srv.addr, timeout=5) as sock:
            sock.sendall(build_request("POST", "/no-response", headers=[("Content-Length", "3")], body=b"abc"))
            assert _read_paced(sock, 1 << 20, 1 << 20, 0.0, limit=5).startswith(b"HTTP/1.1 500 ")
        deadline = time.monotonic() + 5
        while "without starting a response" not in srv.output and time.monotonic() < deadline:
            time.sleep(0.05)
        loud = srv.output
    assert "without starting a response" not in quiet, quiet[-2000:]
    assert loud.count("ASGI callable returned without starting a response.") == 1, loud[-2000:]
    assert "ERROR" in loud.split("ASGI callable returned without starting")[0].splitlines()[-1]


# -- --timeout-write-stall: counted from the client's last progress, in the workers and in the pool -----------------

@pytest.mark.parametrize(("where", "target", "closed"), [
    ("worker", f"/blob?n={20_000_000}", "Closed a connection whose client read none"),
    ("pool", f"/pool/blob?n={20_000_000}&chunk=65536", "Closed a stream whose client read none"),
])
def test_a_write_that_stalls_is_cut_within_a_tick_of_the_write_stall_timeout(where, target, closed):
    # The client reads nothing: its last progress is the kernel buffers filling, right after the request.
    # Cut at 3 s + one look (every 0.75 s); measured per whole period from the first look, it came at 6 s.
    with Server(APP, "--port", "0", "--no-access-log", "--async-path", "/pool/*", "--timeout-write-stall", "3") as srv:
        sock = _slow_client(srv.addr, build_request("GET", target))
        sock.settimeout(10)
        assert sock.recv(1) == b"H"  # (the app made its body: from here the kernel buffers fill at once)
        t0 = time.monotonic()
        deadline = t0 + 10
        while srv.line_time(closed) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        sock.close()
        cut = srv.line_time(closed)
    assert cut is not None, srv.output[-2000:]
    assert 3 <= cut - t0 < 3 + 0.75 + 1, f"cut {cut - t0:.1f} s after the request with --timeout-write-stall 3"


def test_a_slow_steady_reader_of_a_pool_stream_gets_every_byte():
    # Steps of 64 KiB every 50 ms: the client takes bytes many times in every stall period (0.5 s), for 4-5 s.
    # The kernel takes more of the stream's buffer only once a third of its 4 MiB queue is gone, about once a
    # second here: progress must be judged by what the client takes, not by the stream's buffer draining.
    size = 6_000_000
    with Server(APP, "--port", "0", "--no-access-log", "--async-path", "/pool/*",
                "--timeout-write-stall", "0.5") as srv:
        sock = _slow_client(srv.addr, build_request("GET", f"/pool/blob?n={size}&chunk=65536"))
        t0 = time.monotonic()
        raw = _read_paced(sock, 1 << 30, 64 << 10, 0.05, limit=30, end=b"\r\n0\r\n\r\n")  # the last chunk
        took = time.monotonic() - t0
        sock.close()
        assert "--timeout-write-stall" not in srv.output
    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding: chunked" in head.lower()
    body, rest = bytearray(), memoryview(chunked)
    while rest:
        line_end = bytes(rest[:20]).index(b"\r\n")
        n = int(bytes(rest[:line_end]), 16)
        body += rest[line_end + 2:line_end + 2 + n]
        rest = rest[line_end + 4 + n:]
        if n == 0:
            break
    assert bytes(body) == blob(size), _first_difference(bytes(body), blob(size))
    assert took > 3, f"read in {took:.1f} s: not slow enough to wait on the stall timer"


def test_mode_async_keeps_a_connection_whose_last_response_is_still_being_read():
    # --mode async: the keep-alive bound starts when the kernel has sent the response, not when it took it.
    size = 8 << 20
    with Server(APP, "--port", "0", "--no-access-log", "--mode", "async", "--timeout-keep-alive", "1") as srv:
        sock = _slow_client(srv.addr, build_request("GET", f"/blob?n={size}"))
        raw = _read_response_paced(sock, 64 << 10, 0.025, limit=30)
        sock.sendall(build_request("GET", "/small"))
        again = _read_response_paced(sock, 1 << 20, 0.0, limit=5)
        sock.close()
    assert again, f"closed after {len(raw)} bytes of the {size}-byte response"
    _, body, _ = _split_response(raw)
    assert body == blob(size), _first_difference(body, blob(size))
    assert _split_response(again)[1] == b"small"
