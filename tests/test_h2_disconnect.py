"""HTTP/2 (issue 26): a lost connection reaches every stream's app as ``http.disconnect``, and the app's sends
after it neither hang nor raise anything but an OSError (hybrid's ClientDisconnected, as over HTTP/1.1).

Real server processes on 127.0.0.1, h2 frames over a raw socket (tests/h2client.py); the app (tests/apps/h2.py,
``/until-disconnect``) prints when it waits in receive() and what it saw; every wait is bounded."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from tests.h2client import H2Client
from tests.support import Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2:app"
BOUND = 3.0  # seconds from the connection's loss to every app's http.disconnect (the pool looks at once)


@pytest.fixture(scope="module", params=["workers", "async"])
def srv(request):
    extra = ("--mode", "async") if request.param == "async" else ()
    with Server(APP, "--port", "0", "--timeout-request-body", "30", *extra) as server:
        yield server


def wait_line(server: Server, text: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (at := server.line_time(text)) is None:
        assert time.monotonic() < deadline, f"no {text!r} in the server's output within {timeout} s"
        time.sleep(0.02)
    return at


def open_streams(server: Server, tag: str) -> H2Client:
    """Two streams waiting in receive(): one whose request ended (waits for the disconnect alone), one whose
    body is still coming (waits for more body)."""
    client = H2Client(server.addr)
    client.request(f"/until-disconnect?{tag}-ended")
    client.request(f"/until-disconnect?{tag}-body", method="POST", body=b"part", end=False)
    for which in ("ended", "body"):
        wait_line(server, f"until-disconnect {tag}-{which} waits", 10)
    return client


def check_disconnects(server: Server, tag: str, lost: float) -> None:
    for which in ("ended", "body"):
        at = wait_line(server, f"until-disconnect {tag}-{which} saw http.disconnect", lost - time.monotonic() + BOUND)
        assert at - lost < BOUND, (which, at - lost)
        line = next(x for x in server.output.splitlines() if f"until-disconnect {tag}-{which} saw" in x)
        assert line.endswith(("send: no-op", "send: ClientDisconnected")), line


def test_client_closes(srv):
    client = open_streams(srv, "fin")
    lost = time.monotonic()
    client.close()
    check_disconnects(srv, "fin", lost)


def test_client_resets_the_connection(srv):
    client = open_streams(srv, "rst")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    lost = time.monotonic()
    client.close()
    check_disconnects(srv, "rst", lost)


def test_server_closes_on_a_connection_error(srv):
    """A protocol error on the connection (HEADERS on stream 0, RFC 9113 section 6.2): the server sends GOAWAY
    and closes; the streams' apps hear it too."""
    client = open_streams(srv, "goaway")
    try:
        lost = time.monotonic()
        client.send_raw(b"\x00\x00\x00\x01\x05\x00\x00\x00\x00")
        check_disconnects(srv, "goaway", lost)
    finally:
        client.close()
    other = H2Client(srv.addr)  # (the server goes on)
    try:
        assert other.response(other.request("/"))[1] == b"hello h2"
    finally:
        other.close()
