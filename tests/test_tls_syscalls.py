"""System calls per HTTPS keep-alive request, counted by strace on a real server process: one read(2) of the
request and one write(2) of the response (docs/performance.md, issue 22). On this project's machines a system
call costs several microseconds: OpenSSL without read-ahead reads each record in two (its 5-byte header, then its
body), which doubled the reads of every request.

The server runs under ``strace -f -yy`` (each socket call names the connection's addresses), so the calls on the
test's connection are told from the others'. The handshake's calls vary with timing (the client's Finished and
its first request in one segment or two), so what is counted lies between two marker requests, told apart by the
size of their record: a 2 KB header."""

from __future__ import annotations

import re
import socket
import ssl
import time

import pytest

from tests.straced import TracedServer, strace_works
from tests.support import Server
from tests.test_tls import client_context, pki, tls_args  # noqa: F401 (pki: a fixture)
from tests.test_tls_direct import _responses

APP = "tests.apps.tls_app:app"
N = 40  # requests between the markers
MARK = b"GET /info HTTP/1.1\r\nHost: x\r\nX-Mark: " + b"m" * 2000 + b"\r\n\r\n"
PLAIN = b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"
SOCKET_CALLS = "read,write,recvfrom,sendto,recvmsg,sendmsg,readv,writev"


pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not strace_works(), reason="strace missing or not allowed to trace here")]


def _calls_on(trace: str, client_port: int) -> list[tuple[str, int]]:
    """The server's socket calls on the connection from ``client_port``, in order: (name, result)."""
    start = re.compile(r"^(\d+)\s+(\w+)\(\d+<TCP:\[[^\]]*->127\.0\.0\.1:" + str(client_port) + r"\]>")
    result = re.compile(r"\) += (-?\d+)")
    calls, unfinished = [], {}
    for line in trace.splitlines():
        m = start.match(line)
        if m:
            if line.endswith("<unfinished ...>"):  # (another thread's call came in between: finished later)
                unfinished[m.group(1)] = m.group(2)
                continue
            calls.append((m.group(2), int(result.search(line).group(1))))
            continue
        pid = line.split(" ", 1)[0]
        if pid in unfinished and "resumed>" in line:
            calls.append((unfinished.pop(pid), int(result.search(line).group(1))))
    return calls


def test_one_read_and_one_write_per_https_request(pki, tmp_path):  # noqa: F811 (the fixture)
    trace = tmp_path / "strace.txt"
    server = TracedServer(trace, SOCKET_CALLS, APP, *tls_args(pki))
    server.start(timeout=60)
    try:
        raw = socket.create_connection(server.addr, timeout=10)
        with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            for request in [PLAIN, MARK] + [PLAIN] * N + [MARK]:
                sock.sendall(request)
                [(head, _)] = _responses(sock, 1)
                assert head.startswith(b"HTTP/1.1 200"), head
            port = sock.getsockname()[1]
    finally:
        server.stop_traced()
        server.stop()
    calls = _calls_on(trace.read_text(), port)
    marks = [i for i, (name, size) in enumerate(calls) if name == "read" and size >= len(MARK)]
    assert len(marks) == 2, f"the two marker requests' reads not found in {calls}"
    between = [name for name, _ in calls[marks[0] + 1:marks[1]]]
    counts = {name: between.count(name) for name in set(between)}
    # The first marker's response, then per request one read(2) of its record and one write(2) of the answer.
    assert counts == {"write": N + 1, "read": N}, (
        f"{counts} for {N} requests; from the first marker: {calls[marks[0]:marks[0] + 12]}")


def test_records_read_ahead_together_are_all_served(pki):  # noqa: F811 (the fixture)
    """Read-ahead brings several request records in one read(2): each must be decrypted and answered, though
    epoll no longer sees them in the kernel (the client sends nothing more until it has its answers)."""
    with Server(APP, *tls_args(pki)) as server:
        client = MemoryTLS(pki, server.addr)
        try:
            client.send(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")  # (handshake done, tickets read)
            assert client.responses(1)[0].startswith(b"HTTP/1.1 200")
            # Three records in one send(): they reach the server in one segment (loopback).
            client.send(*(f"GET /info?{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3)))
            answers = client.responses(3)
        finally:
            client.sock.close()
        assert [head.split(b"\r\n")[0] for head in answers] == [b"HTTP/1.1 200 OK"] * 3


def test_http2_frames_read_ahead_with_the_handshake_reach_http2(pki):  # noqa: F811 (the fixture)
    """ALPN h2: the client's Finished and its first HTTP/2 frames in one segment. The handshake's read(2) takes
    them all ahead; the pool's HTTP/2 session must get those frames (it reads through SSLSocket.recv, so what
    OpenSSL holds is not seen by epoll) and answer the request."""
    import h2.config
    import h2.connection
    import h2.events

    with Server(APP, *tls_args(pki)) as server:
        client = MemoryTLS(pki, server.addr, alpn="h2", hold_finished=True)
        try:
            assert client.tls.selected_alpn_protocol() == "h2"
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
            conn.initiate_connection()
            conn.send_headers(1, [(b":method", b"GET"), (b":path", b"/info"), (b":scheme", b"https"),
                                  (b":authority", b"127.0.0.1")], end_stream=True)
            client.send(conn.data_to_send())
            deadline = time.monotonic() + 10
            status, ended = None, False
            while not ended:
                assert time.monotonic() < deadline, f"no complete HTTP/2 response in 10 s (status {status})"
                try:
                    data = client.tls.read(65536)
                except ssl.SSLWantReadError:
                    client._receive()
                    continue
                assert data, "the server closed the connection"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers)[b":status"]
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                        ended = True
                client.send(conn.data_to_send())
        finally:
            client.sock.close()
        assert status == b"200"


class MemoryTLS:
    """A TLS client over memory BIOs, so that several records can leave in one send()."""

    def __init__(self, pki, addr, alpn: str = "http/1.1", hold_finished: bool = False) -> None:  # noqa: F811
        self.sock = socket.create_connection(addr, timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = client_context(pki)
        ctx.set_alpn_protocols([alpn])
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.buf = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._receive()
        if not hold_finished:  # (held: the client's Finished leaves with what is sent next, in one send())
            self._flush()

    def _flush(self) -> None:
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def _receive(self) -> None:
        data = self.sock.recv(65536)  # (bounded by the socket's 10 s timeout)
        assert data, "the server closed the connection"
        self.incoming.write(data)

    def send(self, *messages: bytes) -> None:
        for message in messages:
            self.tls.write(message)  # one record each, kept in the memory BIO
        self._flush()

    def responses(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """``count`` Content-Length framed responses (heads and bodies), in order."""
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if len(rest) >= length:
                    out.append(head + sep + rest[:length])
                    self.buf = rest[length:]
                    continue
            assert time.monotonic() < deadline, f"{len(out)} of {count} responses in {timeout} s"
            try:
                self.buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._receive()
        return out
