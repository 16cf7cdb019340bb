"""A WebSocket peer that does not read (issue 20, item 4): a ping flood must not grow the server's memory, the
server must stop reading while its unsent output is past the high-water mark (so the flooding client's own
sends block), Pongs still reach a client that reads late, and an app sending to a client that never reads waits
in ``send`` instead of buffering. Real server, raw loopback sockets, bounded in bytes and seconds."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

import pytest

from tests.support import Server
from tests.test_websocket_frames import masked

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.ws:app"
FLOOD_BYTES = 64 << 20      # at most this much is sent (the old server took it all and buffered the Pongs)
FLOOD_SECONDS = 15.0
STALL = 1.0                 # the client counts as blocked once no byte was accepted for this long
RSS_GROWTH_KB = 16 << 10    # the old server grew by ~30 MB in 5 s of flood


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_ws(srv: Server, path: str) -> socket.socket:
    """A handshaken raw WebSocket with a 4 KiB receive buffer (set before connect, so the window stays small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # (less in flight: the stall comes sooner)
    sock.settimeout(10)
    sock.connect(srv.addr)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {'x' * 22}==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing after the head may be taken from the socket here
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def flood(sock: socket.socket, frames) -> tuple[int, bytes, bool, bytes]:
    """Send ``frames`` (an iterator of (frame, ping_payload|None)) without reading, until the socket accepted
    nothing for STALL seconds or the byte/time cap is reached. Returns (bytes sent, last ping payload whose
    frame went out whole, stalled, the unsent rest of the frame in progress)."""
    sock.setblocking(False)
    sent, last_ping, pending, pending_ping = 0, b"", b"", None
    stalled_since = None
    deadline = time.monotonic() + FLOOD_SECONDS
    try:
        while sent < FLOOD_BYTES and time.monotonic() < deadline:
            if not pending:
                pending, pending_ping = next(frames)
            try:
                n = sock.send(pending)
            except BlockingIOError:
                n = 0
            if n:
                stalled_since = None
                sent += n
                pending = pending[n:]
                if not pending and pending_ping is not None:
                    last_ping = pending_ping
                continue
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since >= STALL:
                break
            select.select([], [sock], [], 0.05)
    finally:
        sock.setblocking(True)
    # What is left of a half-sent frame goes out later, once the server reads again.
    return sent, last_ping, stalled_since is not None and time.monotonic() - stalled_since >= STALL, pending


def ping_flood(with_text: bool):
    """Numbered 125-byte pings; with ``with_text`` every 16th frame is also a 1 KiB text message."""
    i = 0
    while True:
        i += 1
        payload = b"%08d" % i + b"p" * 117
        frames = masked(9, payload)
        if with_text and i % 16 == 0:
            frames += masked(1, b"t" * 1024)
        yield frames, payload


def read_frames(sock: socket.socket, until, timeout: float = 30.0):
    """Server frames (opcode, payload) until ``until(opcode, payload)`` is true; AssertionError after timeout."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        while len(buf) >= 2:
            n, start = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, start = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, start = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < start + n:
                break
            frame = (buf[0] & 0x0F, buf[start:start + n])
            buf = buf[start + n:]
            yield frame
            if until(*frame):
                return
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the awaited frame did not come in time"
        sock.settimeout(remaining)
        chunk = sock.recv(1 << 16)
        assert chunk, "EOF before the awaited frame"
        buf += chunk


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0") as server:
        yield server


# (/ws with text: the echo app waits in send, stops receiving, and the full message queue stopped reading even
# before the fix; pings alone never did.)
@pytest.mark.parametrize(("path", "with_text"), [("/sink", True), ("/ws", False), ("/ws", True)])
def test_ping_flood_from_a_client_that_never_reads_is_not_read_and_memory_stays_bounded(srv, path, with_text):
    sock = open_ws(srv, path)
    try:
        before = rss_kb(srv.pid)
        sent, last_ping, stalled, rest = flood(sock, ping_flood(with_text))
        grown = rss_kb(srv.pid) - before
        assert grown < RSS_GROWTH_KB, f"server RSS grew by {grown} kB while {sent} bytes of pings came in"
        assert stalled, f"the server kept reading: {sent} bytes sent in {FLOOD_SECONDS} s, never blocked"
        # Now the client reads (late): the server writes again, reads again, and answers the most recent ping.
        # (sent from a thread: it only goes through once the server reads again, after the client read)
        sender = threading.Thread(target=sock.sendall, args=(rest + masked(9, b"the last ping"),), daemon=True)
        sender.start()
        pongs = texts = 0
        last_seq = 0
        for opcode, payload in read_frames(sock, lambda op, p: op == 10 and p == b"the last ping"):
            if opcode == 10:
                pongs += 1
                if payload != b"the last ping":
                    seq = int(payload[:8])
                    assert seq > last_seq, "Pongs out of order"
                    last_seq = seq
            elif opcode == 1:
                texts += 1
            else:
                raise AssertionError(f"unexpected frame {opcode} {payload[:20]!r}")
        sender.join(10)
        assert pongs >= 2 and last_seq and last_ping
        if path == "/ws" and with_text:
            assert texts > 0  # the echoes, between the Pongs
    finally:
        sock.close()


def test_app_sending_to_a_client_that_never_reads_waits_in_send(srv):
    sock = open_ws(srv, "/produce")
    try:
        before = rss_kb(srv.pid)
        time.sleep(2.0)  # the app sends 64 KiB messages as fast as it is let
        grown = rss_kb(srv.pid) - before
        assert grown < RSS_GROWTH_KB, f"server RSS grew by {grown} kB while the client did not read"
        # The app was held, not failed: the stream is whole and in order when the client reads.
        seen = []
        for opcode, payload in read_frames(sock, lambda op, p: len(seen) >= 4):
            assert opcode == 2 and len(payload) == 65536
            seen.append(int.from_bytes(payload[:8], "big"))
            assert payload == payload[:8] * 8192
        assert seen == list(range(seen[0], seen[0] + len(seen)))
    finally:
        sock.close()
