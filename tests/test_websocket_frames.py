"""WebSocket frames on the wire (hybrid/_speedups/wsframe.pyx beside wsproto): raw client sockets with real masks,
frames split across many TCP writes or packed many to a write, every length encoding, text and binary, the
frames that must reach wsproto (fragments, control frames, compressed, invalid). Real server, loopback only."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
import zlib

import pytest
import websockets

from tests.support import Server

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.ws:app"
MAX_SIZE = 1_000_000


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0", "--ws-max-size", str(MAX_SIZE)) as server:
        yield server


def masked(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, key: bytes | None = None,
           length_form: int | None = None) -> bytes:
    """A client frame with a real (random unless given) mask; ``length_form`` forces 126 or 127."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    form = length_form or (n if n < 126 else 126 if n < 65536 else 127)
    head = bytes([first, 0x80 | form])
    if form == 126:
        head += struct.pack("!H", n)
    elif form == 127:
        head += struct.pack("!Q", n)
    body = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if n < 4096 else _xor(payload, key)
    return head + key + body


def _xor(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ mask).to_bytes(n, "big")


class Peer:
    """A raw client: handshake, then server frames parsed as (fin, rsv, opcode, payload, header_length)."""

    def __init__(self, server: Server, extra: str = "") -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {'x' * 22}==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, buf
            buf += chunk
        self.head, _, self.buf = buf.partition(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head

    def frame(self, timeout: float = 10.0):
        """The next server frame, or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            buf = self.buf
            if len(buf) >= 2:
                n, start = buf[1] & 0x7F, 2
                if n == 126:
                    n, start = (struct.unpack("!H", buf[2:4])[0], 4) if len(buf) >= 4 else (1 << 62, 4)
                elif n == 127:
                    n, start = (struct.unpack("!Q", buf[2:10])[0], 10) if len(buf) >= 10 else (1 << 62, 10)
                if len(buf) >= start + n:
                    self.buf = buf[start + n:]
                    return bool(buf[0] & 0x80), buf[0] & 0x70, buf[0] & 0x0F, buf[start:start + n], start
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk
            assert time.monotonic() < deadline, "no whole frame in time"

    def message(self):
        """(opcode, payload) of the next data message, its fragments joined; control frames are skipped."""
        opcode, parts = None, []
        while True:
            f = self.frame()
            assert f is not None, "EOF instead of a message"
            fin, _, op, payload, _ = f
            if op >= 8:
                continue
            opcode = opcode or op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def close_code(self):
        while (f := self.frame()) is not None:
            if f[2] == 8:
                return struct.unpack("!H", f[3][:2])[0] if len(f[3]) >= 2 else 1005
        return None

    def close(self):
        self.sock.close()


LENGTHS = [0, 1, 3, 4, 5, 7, 8, 9, 125, 126, 127, 1000, 65535, 65536, 65537, 200_001]


def test_every_length_and_mask_offset_echoes_exactly_with_the_shortest_header(srv):
    peer = Peer(srv)
    try:
        for n in LENGTHS:
            data = os.urandom(n)
            peer.sock.sendall(masked(0x2, data))
            fin, rsv, opcode, payload, hlen = peer.frame()
            assert (fin, rsv, opcode, payload) == (True, 0, 0x2, data), n
            assert hlen == (2 if n < 126 else 4 if n < 65536 else 10), n
        # The 126 and 127 forms at their smallest legal lengths.
        for n, form in ((126, 126), (65536, 127)):
            data = os.urandom(n)
            peer.sock.sendall(masked(0x2, data, length_form=form))
            assert peer.message() == (0x2, data)
    finally:
        peer.close()


def test_text_multibyte_utf8_and_an_empty_text(srv):
    peer = Peer(srv)
    try:
        for text in ("", "héllo wörld €𝄞", "ü" * 40000):
            peer.sock.sendall(masked(0x1, text.encode()))
            assert peer.message() == (0x1, text.encode())
    finally:
        peer.close()


def test_a_frame_trickled_across_many_writes(srv):
    # A 70 KB frame, header and mask key included, in 700-byte writes with pauses: the server sees it across
    # many recv calls (one byte of header at a time at first) and must echo it once, whole.
    peer = Peer(srv)
    try:
        data = os.urandom(70_000)
        wire = masked(0x2, data)
        for i in range(10):
            peer.sock.sendall(wire[i:i + 1])  # the 10-byte header and the key, a byte at a time
            time.sleep(0.002)
        for i in range(10, len(wire), 700):
            peer.sock.sendall(wire[i:i + 700])
            if i % 7000 == 10:
                time.sleep(0.005)
        assert peer.message() == (0x2, data)
        # Then a small one still works (the reader is back at a frame boundary).
        peer.sock.sendall(masked(0x1, b"after"))
        assert peer.message() == (0x1, b"after")
    finally:
        peer.close()


def test_many_frames_in_one_write_echo_in_order(srv):
    peer = Peer(srv)
    try:
        datas = [os.urandom(i * 37 % 300) for i in range(100)] + [os.urandom(100_000), b"end"]
        peer.sock.sendall(b"".join(masked(0x2, d) for d in datas))
        for d in datas:
            assert peer.message() == (0x2, d)
    finally:
        peer.close()


def test_frames_sent_with_the_handshake_are_not_lost(srv):
    # The client sends its first frames in the same write as the upgrade request (before the 101).
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                     + masked(0x1, b"early") + masked(0x2, os.urandom(5000)))
        buf = b""
        while len(buf.partition(b"\r\n\r\n")[2]) < 7:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
        rest = buf.partition(b"\r\n\r\n")[2]
        assert rest[:7] == b"\x81\x05early"
    finally:
        sock.close()


def test_fragments_with_a_ping_between_then_whole_messages_again(srv):
    peer = Peer(srv)
    try:
        text = "fragmented ü message".encode()
        cut = text.index("ü".encode()) + 1  # a code point split across two frames
        peer.sock.sendall(masked(0x1, text[:cut], fin=False) + masked(0x9, b"ping!")
                          + masked(0x0, text[cut:], fin=False) + masked(0x0, b"", fin=True)
                          + masked(0x2, b"whole"))
        fin, _, opcode, payload, _ = peer.frame()
        assert (opcode, payload) == (0xA, b"ping!")  # the pong comes before the echo
        assert peer.message() == (0x1, text)
        assert peer.message() == (0x2, b"whole")
        # A big fragmented binary message, then a whole one.
        big = os.urandom(150_000)
        peer.sock.sendall(masked(0x2, big[:70_000], fin=False) + masked(0x0, big[70_000:]) + masked(0x2, b"x"))
        assert peer.message() == (0x2, big)
        assert peer.message() == (0x2, b"x")
    finally:
        peer.close()


@pytest.mark.parametrize("wire, code", [
    (masked(0x1, b"ok\xff\xfe"), 1007),                          # invalid UTF-8, one whole frame
    (masked(0x1, b"\xed\xa0\x80"), 1007),                         # a UTF-16 surrogate encoded as UTF-8
    (masked(0x2, b"short", length_form=126), 1002),               # 2-byte length for a 5-byte payload
    (masked(0x2, b"\0" * 300, length_form=127), 1002),            # 8-byte length for 300
    (masked(0x2, b"data")[:1] + b"\x04data", 1002),               # not masked
    (masked(0x2, b"data", rsv=0x40), 1002),                       # RSV1 without permessage-deflate
    (masked(0x3, b"data"), 1002),                                 # reserved opcode
    (masked(0x0, b"data"), 1002),                                 # continuation with no message
    (masked(0x9, b"p", fin=False), 1002),                         # fragmented ping
    (masked(0x9, b"p" * 126), 1002),                              # ping over 125 bytes
    (masked(0x1, b"a", fin=False) + masked(0x2, b"b"), 1002),     # new message inside a fragmented one
    (masked(0x2, b"\0" * (MAX_SIZE + 1)), 1009),                  # one frame over --ws-max-size
])
def test_frames_wsproto_must_refuse_close_with_its_code(srv, wire, code):
    peer = Peer(srv)
    try:
        peer.sock.sendall(masked(0x2, b"before"))
        assert peer.message() == (0x2, b"before")
        peer.sock.sendall(wire)
        assert peer.close_code() == code
    finally:
        peer.close()


@pytest.mark.parametrize("bad", [masked(0x1, b"\xff"), masked(0x3, b"x"), masked(0x2, b"x", rsv=0x10)])
def test_a_message_just_before_a_bad_frame_is_answered_before_the_close(srv, bad):
    # Same write: the app gets the message and its echo goes out before wsproto fails the connection (what
    # Autobahn calls strict, cases 3.2, 4.1.3, 5.15 and the like).
    peer = Peer(srv)
    try:
        peer.sock.sendall(masked(0x1, b"first") + masked(0x2, b"second") + bad)
        assert peer.message() == (0x1, b"first")
        assert peer.message() == (0x2, b"second")
        assert peer.close_code() in (1002, 1007)
    finally:
        peer.close()


def test_close_from_the_client_mid_stream(srv):
    peer = Peer(srv)
    try:
        peer.sock.sendall(masked(0x2, b"a" * 1000))
        assert peer.message() == (0x2, b"a" * 1000)
        peer.sock.sendall(masked(0x8, struct.pack("!H", 4321) + b"bye") + masked(0x2, b"ignored after close"))
        assert peer.close_code() == 4321
        assert peer.frame() is None  # then EOF, the frame after the close ignored
    finally:
        peer.close()


def test_uncompressed_frames_on_a_deflate_connection(srv):
    # permessage-deflate negotiated: an uncompressed message (RSV1 clear) is echoed compressed, a compressed one
    # too, in any order.
    peer = Peer(srv, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    try:
        assert b"permessage-deflate" in peer.head.lower()
        inflate = zlib.decompressobj(-15)
        for i in range(4):
            data = (b"plain %d " % i) * 2000
            if i % 2:
                comp = zlib.compressobj(wbits=-15)
                body = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
                peer.sock.sendall(masked(0x2, body[:-4], rsv=0x40))
            else:
                peer.sock.sendall(masked(0x2, data))
            fin, rsv, opcode, payload, _ = peer.frame()
            assert (fin, rsv, opcode) == (True, 0x40, 0x2)
            assert inflate.decompress(payload + b"\x00\x00\xff\xff") == data
    finally:
        peer.close()


def test_websockets_client_echo_both_ways_many_sizes(srv):
    async def main():
        async with websockets.connect(f"ws://{srv.host}:{srv.port}/ws", compression=None, max_size=None) as ws:
            for n in (16, 65536, 500_000):
                data = os.urandom(n)
                for _ in range(3):
                    await ws.send(data)
                    assert await ws.recv() == data
            await ws.send("text " * 1000)
            assert await ws.recv() == "text " * 1000

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_client_that_does_not_read_stalls_the_echo_instead_of_filling_server_memory(srv):
    # The client sends 64 KiB messages and reads nothing: the server's writes must wait (drain), its reading
    # pause (QUEUE_HIGH), and the client's send stall well before the cap. Then every echo still arrives.
    peer = Peer(srv)
    cap = 96 * 1024 * 1024
    data = os.urandom(65536)
    wire = masked(0x2, data)
    sent = 0
    try:
        peer.sock.setblocking(False)
        idle_since = time.monotonic()
        while sent < cap and time.monotonic() - idle_since < 0.5:
            try:
                sent += peer.sock.send(memoryview(wire)[sent % len(wire):])
                idle_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < cap, "the server kept reading: its writes were never drained"
        peer.sock.setblocking(True)
        peer.sock.settimeout(10)
        count = -(-sent // len(wire))
        remainder = count * len(wire) - sent
        reader_done = []

        def finish():  # complete the last frame while the main thread reads the echoes
            if remainder:
                peer.sock.sendall(wire[len(wire) - remainder:])
            reader_done.append(True)

        writer = threading.Thread(target=finish)
        writer.start()
        for _ in range(count):
            assert peer.message() == (0x2, data)
        writer.join(10)
        assert reader_done
    finally:
        peer.close()


def test_fast_path_over_tls(tmp_path):
    # wss without compression: whole frames parsed in the read buffer a TLS stream fills (decrypted records).
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with Server(APP, "--port", "0", "--ssl-certfile", str(chain), "--ssl-keyfile", str(key)) as server:
        async def main():
            async with websockets.connect(f"wss://{server.host}:{server.port}/ws", ssl=ctx, compression=None,
                                          max_size=None) as ws:
                for n in (0, 16, 65536, 1_000_000):
                    data = os.urandom(n)
                    await ws.send(data)
                    assert await ws.recv() == data
                await ws.send("é" * 50_000)
                assert await ws.recv() == "é" * 50_000

        asyncio.run(asyncio.wait_for(main(), 30))
