"""What a new HTTPS connection is offered (docs/performance.md, "HTTPS new connections"; issue 22): TLS 1.3
with AES-128-GCM/SHA-256 preferred, one session ticket per full handshake, and that ticket resumes a session.
Real server process, Python ssl clients on 127.0.0.1; every wait bounded."""

from __future__ import annotations

import re
import socket
import ssl
import struct
import time

import pytest

from tests.support import Server
from tests.test_tls import APP, client_context, pki, read_to_eof, tls_args  # noqa: F401 (pki: a fixture)

pytestmark = pytest.mark.timeout(60)

REQUEST = b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def srv(pki):  # noqa: F811 (pki: the fixture imported above)
    with Server(APP, *tls_args(pki)) as server:
        yield server


def _one_request(server: Server, ctx: ssl.SSLContext, session=None) -> tuple[ssl.SSLSocket, bytes]:
    """A new connection (resuming ``session`` if given), one request, the response read to the server's close."""
    raw = socket.create_connection(server.addr, timeout=5)
    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
    sock.sendall(REQUEST)
    data, _ = read_to_eof(sock, 5.0)
    return sock, data


def test_tls13_prefers_aes128_gcm_sha256(srv, pki):  # noqa: F811
    # A default client offers AES-256 first; the server's order decides (SHA-256 key schedule, cheaper here).
    ctx = client_context(pki)
    assert [c["name"] for c in ctx.get_ciphers()][0] == "TLS_AES_256_GCM_SHA384"
    sock, data = _one_request(srv, ctx)
    with sock:
        assert data.startswith(b"HTTP/1.1 200")
        assert sock.version() == "TLSv1.3"
        assert sock.cipher()[0] == "TLS_AES_128_GCM_SHA256"


def test_one_session_ticket_resumes(srv, pki):  # noqa: F811
    tickets = []

    def on_message(conn, direction, version, content_type, msg_type, data):
        if (direction == "read" and content_type == ssl._TLSContentType.HANDSHAKE
                and msg_type == ssl._TLSMessageType.NEWSESSION_TICKET):
            tickets.append(len(data))

    ctx = client_context(pki)
    ctx._msg_callback = on_message  # (CPython's TLS message hook: every handshake message the client reads)
    sock, data = _one_request(srv, ctx)
    with sock:
        assert data.startswith(b"HTTP/1.1 200")
        assert not sock.session_reused
        session = sock.session
    assert len(tickets) == 1, f"the server sent {len(tickets)} session tickets after a full handshake"
    assert session is not None and session.has_ticket
    # The ticket resumes: the next connection skips the certificate (a PSK handshake) and is served.
    for _ in range(2):
        tickets.clear()
        sock, data = _one_request(srv, ctx, session)
        with sock:
            assert data.startswith(b"HTTP/1.1 200")
            assert sock.session_reused, "the session ticket did not resume a session"
            session = sock.session
        assert len(tickets) == 1  # (each handshake, resumed too, brings the client a fresh ticket)


def test_first_handshake_step_at_accept(pki, tmp_path):  # noqa: F811
    """A ClientHello already in the socket when it is accepted is answered at once: between the accept4 and the
    server's flight, the serving thread polls no epoll set (only ssl's wrap_socket checks and the ClientHello's
    read come between). Deterministic with --limit-connections 1:
    while a first connection holds the limit, the second waits in the listen backlog with its ClientHello sent."""
    from tests.straced import TracedServer, strace_works

    if not strace_works():
        pytest.skip("strace missing or not allowed to trace here")
    calls = "accept4,read,write,epoll_wait,epoll_pwait,getsockopt,getpeername,ioctl"
    trace = tmp_path / "strace.txt"
    server = TracedServer(trace, calls, APP, *tls_args(pki, "--limit-connections", "1"))
    server.start(timeout=60)
    try:
        ctx = client_context(pki)
        first = ctx.wrap_socket(socket.create_connection(server.addr, timeout=10), server_hostname="127.0.0.1")
        second = socket.create_connection(server.addr, timeout=10)  # (the kernel's backlog: not accepted yet)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        second.sendall(outgoing.read())  # the ClientHello, before the server can accept this connection
        port = second.getsockname()[1]
        time.sleep(0.2)  # (it reaches the socket's receive queue)
        first.close()  # the limit frees: the listener is polled again, the second connection accepted
        assert second.recv(65536), "no ServerHello"  # (bounded: the socket's 10 s timeout)
        second.close()
    finally:
        server.stop_traced()
        server.stop()
    lines = trace.read_text().splitlines()
    conn = re.compile(r"<TCP:\[[^\]]*->127\.0\.0\.1:" + str(port) + r"\]>")
    accepted = next(i for i, line in enumerate(lines)  # (its return: "resumed" if another thread's call came between)
                    if re.match(r"\d+ +(accept4\(|<\.\.\. accept4 resumed>)", line)
                    and conn.search(line.rsplit(") = ", 1)[-1]))
    thread = lines[accepted].split(" ", 1)[0]
    flight = next(i for i in range(accepted, len(lines)) if re.match(r"\d+ +write\(", lines[i])
                  and conn.search(lines[i]))
    between = [m.group(1) for line in lines[accepted + 1:flight] if line.split(" ", 1)[0] == thread
               and (m := re.match(r"\d+ +(\w+)\(", line))]  # (its calls, "resumed" halves left out)
    assert "epoll_wait" not in between and "epoll_pwait" not in between, between
    # (the accepted socket made non-blocking; ssl's wrap_socket: its type, its peer, its timeout; the ClientHello)
    assert between == ["ioctl", "getsockopt", "getpeername", "ioctl", "read"], between


def test_connection_reset_after_a_response_is_closed(pki):  # noqa: F811
    """A client that resets its keep-alive connection (RST, no close_notify) after a response: the server must
    close its side at once. It used to keep the connection, epoll reporting it readable ~15,000 times a second
    while OpenSSL's failed read said "waiting to read" (SSL_want), until the keep-alive sweep. Seen here with
    --limit-connections 1: the next client is served only once the reset connection is closed."""
    with Server(APP, *tls_args(pki, "--limit-connections", "1", "--timeout-keep-alive", "30")) as server:
        ctx = client_context(pki)
        for _ in range(2):  # (the second time the server must have closed the first reset connection)
            raw = socket.create_connection(server.addr, timeout=3)
            sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            sock.sendall(b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "no response within 3 s"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            sock.close()
