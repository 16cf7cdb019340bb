"""HTTP/2 frame-level checks of RFC 9113 MUSTs (what h2spec would check; it cannot be installed here), each sent
by hand over a raw socket to a real server and answered as the section says. Most of the rules are enforced by
the h2 library; these tests check that the server passes its verdict on (the GOAWAY or RST_STREAM code) and
goes on serving. Every wait is bounded."""

from __future__ import annotations

import json

import h2.errors
import pytest
from hpack import Encoder
from hyperframe.frame import GoAwayFrame, RstStreamFrame, WindowUpdateFrame

from tests.h2client import H2Client, read_frames
from tests.support import Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2:app"
E = h2.errors.ErrorCodes
GET = [(b":method", b"GET"), (b":path", b"/scope"), (b":scheme", b"http"), (b":authority", b"t")]


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0") as server:
        yield server


def raw(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    """A frame built by hand (hyperframe refuses to build the invalid ones)."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


def headers(sid: int, fields) -> bytes:
    return raw(0x1, 0x5, sid, Encoder().encode(fields))  # END_STREAM | END_HEADERS


CASES = {
    # section: (bytes sent after the preface, the expected ending: ("goaway"|"rst", code))
    "5.1.1 even stream id from a client": (headers(2, GET), ("goaway", E.PROTOCOL_ERROR)),
    "5.1.1 stream id lower than a previous one": (headers(5, GET) + headers(3, GET), ("goaway", E.PROTOCOL_ERROR)),
    "6.2 HEADERS on stream 0": (headers(0, GET), ("goaway", E.PROTOCOL_ERROR)),
    "6.9 WINDOW_UPDATE of 0 on the connection": (raw(0x8, 0, 0, bytes(4)), ("goaway", E.PROTOCOL_ERROR)),
    "6.9.1 connection window past 2^31-1": (WindowUpdateFrame(0, window_increment=2**31 - 1).serialize(),
                                            ("goaway", E.FLOW_CONTROL_ERROR)),
    "8.2.1 upper-case field name": (headers(1, [*GET, (b"X-Upper", b"v")]), ("goaway", E.PROTOCOL_ERROR)),
    "8.2.2 connection-specific field": (headers(1, [*GET, (b"connection", b"keep-alive")]),
                                        ("goaway", E.PROTOCOL_ERROR)),
    "8.3.1 no :path": (headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t")]),
                       ("goaway", E.PROTOCOL_ERROR)),
    "8.3 pseudo-header after a regular field": (headers(1, [(b":method", b"GET"), (b"x-a", b"1"),
                                                            (b":path", b"/"), (b":scheme", b"http")]),
                                                ("goaway", E.PROTOCOL_ERROR)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rfc9113_must(srv, case):
    sent, (kind, code) = CASES[case]
    client = H2Client(srv.addr)
    try:
        client.send_raw(sent)
        frames, closed = read_frames(client.sock, 5, until=lambda f: isinstance(f, GoAwayFrame | RstStreamFrame))
        ending = frames[-1] if frames else None
        expected = GoAwayFrame if kind == "goaway" else RstStreamFrame
        assert isinstance(ending, expected), f"{case}: expected {kind} {code!r}, got {frames[-3:]}"
        assert ending.error_code == code, f"{case}: {ending}"
        if kind == "goaway":
            _, closed = read_frames(client.sock, 5)
            assert closed, f"{case}: the connection stayed open after GOAWAY"
    finally:
        client.close()
    other = H2Client(srv.addr)  # the server goes on
    try:
        assert json.loads(other.response(other.request("/scope"))[1])["http_version"] == "2"
    finally:
        other.close()


def test_rst_stream_of_an_idle_stream_is_a_connection_error(srv):
    """5.1: RST_STREAM on an idle stream: connection error PROTOCOL_ERROR."""
    client = H2Client(srv.addr)
    try:
        client.send_raw(RstStreamFrame(7, error_code=0).serialize())
        frames, _ = read_frames(client.sock, 5, until=lambda f: isinstance(f, GoAwayFrame))
        assert isinstance(frames[-1], GoAwayFrame) and frames[-1].error_code == E.PROTOCOL_ERROR
    finally:
        client.close()
