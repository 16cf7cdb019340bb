"""What a new HTTPS connection is offered (docs/performance.md, "HTTPS new connections"; issue 22): TLS 1.3
with AES-128-GCM/SHA-256 preferred, one session ticket per full handshake, and that ticket resumes a session.
Real server process, Python ssl clients on 127.0.0.1; every wait bounded."""

from __future__ import annotations

import socket
import ssl

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
