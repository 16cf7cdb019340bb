"""TLS reads and writes from compiled code (hybrid/_speedups/tls_io.pyx: SSL_read_ex/SSL_write_ex on ssl's own SSL
object) and through the ssl module (HYBRID_TLS_DIRECT=0) give the client the same bytes: pipelined requests in
one TLS record, an upload of many records, a response larger than the socket buffers to a slow reader (OpenSSL's
retry with the same bytes), and a client's close_notify ending the connection. Real server processes, trustme
certificates, 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import time

import pytest

from tests.support import Server
from tests.test_tls import client_context, pki, tls_args  # noqa: F401 (pki: a fixture)

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.tls_app:app"
PATHS = {"direct": {}, "ssl-module": {"HYBRID_TLS_DIRECT": "0"}}


@pytest.fixture(scope="module", params=sorted(PATHS))
def srv(request, pki):  # noqa: F811 (the fixture)
    with Server(APP, *tls_args(pki, "--log-level", "debug"), env=PATHS[request.param]) as server:
        server.io_path = request.param
        yield server


def _connect(pki, server) -> ssl.SSLSocket:  # noqa: F811 (pki: the fixture's value)
    raw = socket.create_connection(server.addr, timeout=10)
    return client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")


def _responses(sock, count: int, timeout: float = 10.0) -> list[tuple[bytes, bytes]]:
    """``count`` Content-Length framed responses as (head, body); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    buf, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            if len(rest) < length:
                break
            out.append((head, rest[:length]))
            buf = rest[length:]
            if len(out) == count:
                return out
        assert time.monotonic() < deadline, f"{len(out)} of {count} responses in {timeout} s"
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(out)} of {count} responses"
        buf += chunk
    return out


def test_the_server_says_which_tls_io_it_uses(srv):
    expected = {"direct": "TLS reads and writes: compiled, SSL_read_ex/SSL_write_ex of OpenSSL",
                "ssl-module": "TLS reads and writes: through the ssl module (turned off (HYBRID_TLS_DIRECT=0))"}
    assert expected[srv.io_path] in srv.output, srv.output


def test_pipelined_requests_in_one_record(srv, pki):  # noqa: F811 (the fixture)
    with _connect(pki, srv) as sock:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n" * 3)  # one write: one TLS record
        answers = _responses(sock, 3)
    assert [head.split(b"\r\n")[0] for head, _ in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert {json.loads(body)["scheme"] for _, body in answers} == {"https"}


def test_a_head_filling_most_of_a_record(srv, pki):  # noqa: F811 (the fixture)
    # One record of ~12 KB and nothing after it: the first read must take all of it, since no later epoll event
    # would come for bytes left inside OpenSSL.
    with _connect(pki, srv) as sock:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (b"a" * 12000))
        [(head, body)] = _responses(sock, 1)
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["scheme"] == "https"


def test_upload_of_many_records_then_a_next_request(srv, pki):  # noqa: F811 (the fixture)
    # ~1 MB: 61 records of 16 KiB and a last one of 4,576 bytes, each read whole by one SSL_read (a read that left
    # some of a record inside OpenSSL would wait for an epoll event that never comes: nothing follows the body).
    body = bytes(range(251)) * 4000
    with _connect(pki, srv) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        [(_, echo)] = _responses(sock, 1, timeout=30)
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        [(_, scope)] = _responses(sock, 1)
    assert json.loads(echo) == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert json.loads(scope)["scheme"] == "https"


def test_slow_reader_gets_a_large_response_whole(srv, pki):  # noqa: F811 (the fixture)
    size = 8 << 20  # far more than the socket buffers: the server's write waits (WANT_WRITE) and is retried
    with _connect(pki, srv) as sock:
        sock.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\nGET /scope HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        time.sleep(0.5)  # every buffer fills first
        (head, big), (_, scope) = _responses(sock, 2, timeout=60)
    assert head.startswith(b"HTTP/1.1 200")
    assert big == bytes(range(256)) * (size // 256)
    assert json.loads(scope)["scheme"] == "https"


def test_client_close_notify_ends_the_connection_cleanly(srv, pki):  # noqa: F811 (the fixture)
    with _connect(pki, srv) as sock:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        _responses(sock, 1)
        sock.settimeout(5)
        # Our close_notify; unwrap() returns once the server's own close_notify came back, which it sends only
        # when its read saw the end of the TLS stream (and closed) rather than nothing to read.
        raw = sock.unwrap()
        raw.settimeout(5)
        assert raw.recv(1) == b""  # and then the TCP connection closes
        raw.close()


def test_a_corrupt_record_closes_only_its_connection(srv, pki):  # noqa: F811 (the fixture)
    with _connect(pki, srv) as other, _connect(pki, srv) as sock:
        for s in (other, sock):
            s.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
            _responses(s, 1)
        # An application-data record that fails authentication, written under the TLS layer: the server's read
        # fails (not "nothing to read now"), and it closes this connection.
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        try:
            raw.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))
            raw.settimeout(5)
            deadline = time.monotonic() + 5
            while True:
                assert time.monotonic() < deadline, "the connection with the corrupt record was not closed"
                try:
                    if not raw.recv(65536):
                        break
                except ConnectionResetError:
                    break
                except TimeoutError:
                    raise AssertionError("the connection with the corrupt record was not closed in 5 s") from None
        finally:
            raw.close()
        # The other connection, on the same serving thread, and a new one are served as before.
        other.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        [(head, _)] = _responses(other, 1)
        assert head.startswith(b"HTTP/1.1 200")
    with _connect(pki, srv) as fresh:
        fresh.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        [(head, _)] = _responses(fresh, 1)
        assert head.startswith(b"HTTP/1.1 200")
