"""WebSocket data messages sent from another loop (a POST route on a serving thread) to WebSockets the async pool
owns are handed over without a round trip (hybrid/asgi/crossloop.py): order, backpressure, closed connections and
invalid messages, over real sockets (tests/apps/xsend.py)."""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time

import httpx
import pytest

from .support import Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.xsend:app"


class RawWebSocket:
    """A client on a plain socket: reads the server's (unmasked) frames only when asked, so a test controls what
    the server can write."""

    def __init__(self, srv: Server, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(srv.addr)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert self.recv() == (0x1, b"ready")

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        assert data, f"the server closed the connection; unread: {self.buf[:200]!r}"
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload). Whole messages only: the server sends no fragments here."""
        b0, b1 = self._take(2)
        assert b0 & 0x80, "a fragment"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return b0 & 0x0F, self._take(n)

    def send_text(self, text: str) -> None:
        mask = os.urandom(4)
        data = text.encode()
        assert len(data) < 126
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        self.sock.close()


def post(srv: Server, path: str, timeout: float = 10) -> list[str]:
    r = httpx.post(srv.url + path, timeout=timeout)
    assert r.status_code == 200, (r.status_code, r.text, srv.output[-2000:])
    lines = r.text.split("\n")
    assert lines[0].startswith("hybrid-worker-"), lines  # the route ran on a serving thread: another loop
    return lines[1:]


def texts(ws: RawWebSocket, n: int) -> list[str]:
    out = []
    for _ in range(n):
        opcode, payload = ws.recv()
        assert opcode == 0x1, (opcode, payload)
        out.append(payload.decode())
    return out


def test_order_across_loops():
    """The handler blocks the pool's loop while a route sends, then sends its own message in the same step: the
    route's messages, waiting in the outbox, must go out first."""
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        ws = RawWebSocket(srv)
        try:
            for n in range(20):
                ws.send_text(f"hold:{n}")
                assert texts(ws, 1) == [f"holding:{n}"]  # the pool's loop is now blocked in the handler
                sent = [f"r{n}.{i}" for i in range(n % 4 + 1)]
                post(srv, "/send?m=" + ",".join(sent))
                assert texts(ws, len(sent) + 1) == [*sent, f"own:{n}"]
        finally:
            ws.close()


def test_messages_sent_before_the_handler_returns_go_out_before_the_close():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        ws = RawWebSocket(srv)
        try:
            ws.send_text("end:0")
            assert texts(ws, 1) == ["holding:0"]
            post(srv, "/send?m=last1,last2")
            assert texts(ws, 2) == ["last1", "last2"]
            opcode, payload = ws.recv()
            assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1000))
        finally:
            ws.close()


def test_backpressure_from_another_loop():
    """32 MB in 16 KiB messages from a route to a WebSocket whose client does not read: the route is held once the
    kernel's buffers and the high-water mark are full, not let through to fill memory; then everything arrives, in
    order."""
    n, size = 2048, 16384
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        wmem_max = int(f.read().split()[2])
    bound = wmem_max + 2_000_000  # the server's socket buffer, the client's (64 KiB asked), the mark, one message
    assert bound < n * size // 2
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        ws = RawWebSocket(srv, rcvbuf=65536)
        flood, answer = start_flood(srv, n, size)
        try:
            last = wait_until_held(srv)
            assert 0 < last * size <= bound, (last, bound)  # held: not the whole 32 MB accepted
            assert "r" not in answer
            for i in range(n):
                opcode, payload = ws.recv()
                assert (opcode, len(payload), payload[:4]) == (0x2, size, struct.pack("!I", i))
        finally:
            flood.join(30)
            ws.close()
    assert answer["r"].status_code == 200, answer


def start_flood(srv: Server, n: int, size: int) -> tuple[threading.Thread, dict]:
    """POST /flood (n messages of ``size`` bytes to the WebSocket, from the route's loop) on a thread of its own:
    the thread, and the dict that gets its answer as ``r``."""
    answer: dict = {}
    flood = threading.Thread(target=lambda: answer.update(r=httpx.post(f"{srv.url}/flood?n={n}&size={size}",
                                                                          timeout=30)))
    flood.start()
    return flood, answer


def wait_until_held(srv: Server) -> int:
    """The flood's sends that returned, once their count has not moved for a second (at most 10 s)."""
    last, still_since, deadline = -1, time.monotonic(), time.monotonic() + 10
    while time.monotonic() < deadline and time.monotonic() - still_since < 1.0:
        time.sleep(0.1)
        sent = int(httpx.get(srv.url + "/progress", timeout=5).text.split("\n")[1])
        if sent != last:
            last, still_since = sent, time.monotonic()
    return last


def test_backpressure_from_another_loop_over_http2():
    """Over HTTP/2 the client's windows hold the output: a client that reads nothing (64 KiB windows, none
    reopened) lets through the window, the high-water mark and a message, not the 8 MB the route sends."""
    from wsproto.events import BytesMessage, TextMessage

    from tests.test_h2_websocket import WS, h2_client

    n, size = 512, 16384
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        client = h2_client(srv)
        ws = WS(client, "/ws")
        ws.accepted()
        assert ws.next_event() == TextMessage(data="ready")
        flood, answer = start_flood(srv, n, size)
        try:
            last = wait_until_held(srv)
            assert 0 < last * size <= 300_000, last
            assert "r" not in answer
            for i in range(n):  # (reading acknowledges the DATA: the windows open again)
                assert ws.next_event(timeout=10) == BytesMessage(data=struct.pack("!I", i) + bytes(size - 4))
        finally:
            flood.join(30)
            client.close()
    assert answer["r"].status_code == 200, answer


def test_send_after_close_from_another_loop():
    """A send to a WebSocket known closed raises ClientDisconnected (an OSError) in the route; a close is a no-op."""
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        ws = RawWebSocket(srv)
        ws.sock.sendall(bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack("!H", 1000))  # close, mask 0
        assert ws.recv()[0] == 0x8  # the server's answer
        ws.close()
        deadline = time.monotonic() + 5
        while post(srv, "/closed") != ["yes"]:
            assert time.monotonic() < deadline, "the handler never got its disconnect"
            time.sleep(0.05)
        assert post(srv, "/after-close") == ["ClientDisconnected OSError", "ok"]


def test_invalid_messages_from_another_loop_raise_in_the_route():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        ws = RawWebSocket(srv)
        try:
            assert post(srv, "/bad") == ["TypeError", "ValueError"]
            post(srv, "/send?m=still-open")  # the connection is unharmed
            assert texts(ws, 1) == ["still-open"]
        finally:
            ws.close()


def test_order_across_loops_over_http2():
    """The same over an HTTP/2 stream (RFC 8441): the handed-over messages go out in DATA before the handler's."""
    from wsproto.events import TextMessage

    from tests.test_h2_websocket import WS, h2_client

    with Server(APP, "--port", "0", "--no-access-log") as srv:
        client = h2_client(srv)
        ws = WS(client, "/ws")
        ws.accepted()
        assert ws.next_event() == TextMessage(data="ready")
        for n in range(10):
            ws.send(TextMessage(data=f"hold:{n}"))
            assert ws.next_event() == TextMessage(data=f"holding:{n}")
            sent = [f"r{n}.{i}" for i in range(n % 3 + 1)]
            post(srv, "/send?m=" + ",".join(sent))
            assert [ws.next_event().data for _ in range(len(sent) + 1)] == [*sent, f"own:{n}"]
        client.close()


def test_order_across_loops_with_permessage_deflate():
    """With an extension in use the pool's loop frames the handed-over messages through wsproto (compressed)."""
    from websockets.sync.client import connect

    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with connect(f"ws://{srv.host}:{srv.port}/ws", compression="deflate", open_timeout=5) as ws:
            assert ws.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
            assert ws.recv(timeout=5) == "ready"
            for n in range(10):
                ws.send(f"hold:{n}")
                assert ws.recv(timeout=5) == f"holding:{n}"
                sent = [f"r{n}.{i}" * 50 for i in range(n % 3 + 1)]
                post(srv, "/send?m=" + ",".join(sent))
                assert [ws.recv(timeout=5) for _ in range(len(sent) + 1)] == [*sent, f"own:{n}"]
