"""RFC 9113 sections 8.2 and 8.3, the checks hybrid makes itself since h2's header validation is off
(hybrid/_speedups/h2fields.pyx): each malformed request sent by hand over a raw socket to a real server, and
answered as h2 answered it (GOAWAY PROTOCOL_ERROR: h2 makes every malformed request a connection error); the
request normalization (cookies, Host), and the response's (names, connection-specific fields, whitespace).
test_h2_conformance.py has the cases it already covered. Every wait is bounded."""

from __future__ import annotations

import json

import h2.errors
import pytest
from hpack import Encoder
from hyperframe.frame import GoAwayFrame, RstStreamFrame

from tests.h2client import H2Client, read_frames
from tests.support import Server
from tests.test_h2_conformance import GET, headers, raw

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2:app"
E = h2.errors.ErrorCodes
POST = [(b":method", b"POST"), (b":path", b"/scope-body"), (b":scheme", b"http"), (b":authority", b"t")]


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0") as server:
        yield server


def open_headers(sid: int, fields, encoder: Encoder) -> bytes:
    return raw(0x1, 0x4, sid, encoder.encode(fields))  # END_HEADERS, the stream stays open


def trailers(fields) -> bytes:
    encoder = Encoder()
    return (open_headers(1, POST, encoder) + raw(0x0, 0, 1, b"abc")
            + raw(0x1, 0x5, 1, encoder.encode(fields)))


def without(name: bytes):
    return [f for f in GET if f[0] != name]


MALFORMED = {  # section: the bytes after the preface (each ends the connection with GOAWAY PROTOCOL_ERROR)
    "8.2.1 space in a field name": headers(1, [*GET, (b"x a", b"v")]),
    "8.2.1 DEL in a field name": headers(1, [*GET, (b"x\x7f", b"v")]),
    "8.2.1 byte over 0x7f in a field name": headers(1, [*GET, (b"x\xe9", b"v")]),
    "8.2.1 colon inside a field name": headers(1, [*GET, (b"x:a", b"v")]),
    "8.2.1 empty field name": headers(1, [*GET, (b"", b"v")]),
    "8.2.1 NUL in a field value": headers(1, [*GET, (b"x-a", b"a\x00b")]),
    "8.2.1 LF in a field value": headers(1, [*GET, (b"x-a", b"a\nb")]),
    "8.2.1 CR in a field value": headers(1, [*GET, (b"x-a", b"a\rb")]),
    "8.2.1 leading space in a field value": headers(1, [*GET, (b"x-a", b" v")]),
    "8.2.1 trailing tab in a field value": headers(1, [*GET, (b"x-a", b"v\t")]),
    "8.2.2 TE other than trailers": headers(1, [*GET, (b"te", b"gzip")]),
    "8.2.2 transfer-encoding": headers(1, [*GET, (b"transfer-encoding", b"chunked")]),
    "8.2.2 upgrade": headers(1, [*GET, (b"upgrade", b"h2c")]),
    "8.2.2 keep-alive": headers(1, [*GET, (b"keep-alive", b"5")]),
    "8.2.2 proxy-connection": headers(1, [*GET, (b"proxy-connection", b"close")]),
    "8.3 duplicate :path": headers(1, [*GET, (b":path", b"/")]),
    "8.3 unknown pseudo-header": headers(1, [(b":foo", b"x"), *GET]),
    "8.3.1 :status in a request": headers(1, [(b":status", b"200"), *GET]),
    "8.3.1 no :method": headers(1, without(b":method")),
    "8.3.1 no :scheme": headers(1, without(b":scheme")),
    "8.3.1 empty :path": headers(1, [*without(b":path"), (b":path", b"")]),
    "8.3.1 neither :authority nor Host": headers(1, without(b":authority")),
    "8.3.1 Host differs from :authority": headers(1, [*GET, (b"host", b"other")]),
    "8.3.1 two Host fields": headers(1, [*without(b":authority"), (b"host", b"t"), (b"host", b"t")]),
    "8.5 CONNECT with :path": headers(1, [(b":method", b"CONNECT"), (b":path", b"/"), (b":authority", b"t:1")]),
    "RFC 8441 :protocol without CONNECT": headers(1, [*GET, (b":protocol", b"websocket")]),
    "8.1 pseudo-header in trailers": trailers([(b":path", b"/")]),
    "8.1 upper-case name in trailers": trailers([(b"X-Sum", b"1")]),
    "8.2.2 connection-specific field in trailers": trailers([(b"connection", b"close")]),
    "8.1.1 DATA longer than content-length": open_headers(1, [*POST, (b"content-length", b"2")], Encoder())
    + raw(0x0, 0x1, 1, b"abc"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_ends_the_connection(srv, case):
    client = H2Client(srv.addr)
    try:
        client.send_raw(MALFORMED[case])
        frames, _ = read_frames(client.sock, 5, until=lambda f: isinstance(f, GoAwayFrame | RstStreamFrame))
        ending = frames[-1] if frames else None
        assert isinstance(ending, GoAwayFrame), f"{case}: expected GOAWAY PROTOCOL_ERROR, got {frames[-3:]}"
        assert ending.error_code == E.PROTOCOL_ERROR, f"{case}: {ending}"
        _, closed = read_frames(client.sock, 5)
        assert closed, f"{case}: the connection stayed open after GOAWAY"
    finally:
        client.close()


def test_valid_requests_are_served(srv):
    """What the checks must let through: TE trailers, empty values, Host equal to :authority, Host alone, a
    CONNECT (answered 501), valid trailers; split cookies joined (section 8.2.3)."""
    client = H2Client(srv.addr)
    try:
        scope = json.loads(client.response(client.request("/scope", headers=[
            (b"te", b"trailers"), (b"x-empty", b""), (b"host", b"test"), (b"cookie", b"a=1"),
            (b"x-b", b"2"), (b"cookie", b"b=2")]))[1])
        assert scope["headers"] == [["te", "trailers"], ["x-empty", ""], ["host", "test"], ["x-b", "2"],
                                    ["cookie", "a=1; b=2"]]
        sid = client.conn.get_next_available_stream_id()
        client.send_raw(headers(sid, [(b":method", b"GET"), (b":path", b"/scope"), (b":scheme", b"http"),
                                      (b"host", b"only-host")]))
        frames, _ = read_frames(client.sock, 5, until=lambda f: f.stream_id == sid and "END_STREAM" in f.flags)
        assert not any(isinstance(f, GoAwayFrame | RstStreamFrame) for f in frames), frames
        assert b"only-host" in b"".join(f.data for f in frames if f.type == 0x0), frames
    finally:
        client.close()
    client = H2Client(srv.addr)
    try:
        connect = client.conn.get_next_available_stream_id()
        client.conn.send_headers(connect, [(b":method", b"CONNECT"), (b":authority", b"t:443")], end_stream=True)
        client.flush()
        assert client.response(connect)[0][b":status"] == b"501"
        sid = client.request("/scope-body", method="POST", body=b"abc", end=False)
        client.conn.send_headers(sid, [(b"x-sum", b"3")], end_stream=True)
        client.flush()
        assert client.response(sid)[1] == b"3"
    finally:
        client.close()


@pytest.mark.parametrize(("case", "expected"), [
    ("normalize", {b":status": b"200", b"x-upper": b"v", b"te": b"Trailers"}),
    ("te", {b":status": b"500"}),
    ("pseudo", {b":status": b"500"}),
    ("empty", {b":status": b"500"}),
])
def test_response_headers_are_normalized_or_refused(srv, case, expected):
    """The app's response headers: names lower-cased, values stripped, connection-specific fields dropped;
    a TE other than trailers, a pseudo-header or an empty name is the app's error (a 500)."""
    client = H2Client(srv.addr)
    try:
        got, _ = client.response(client.request(f"/resp-headers?{case}"))
        got = {k: v for k, v in got.items() if k not in (b"date", b"server", b"content-type", b"content-length")}
        assert got == expected, got
    finally:
        client.close()


def test_configured_headers_are_normalized_and_unsendable_ones_left_out():
    """--header fields go out lower-cased; one HTTP/2 cannot carry (TE other than trailers) is left out rather
    than failing every response."""
    with Server(APP, "--port", "0", "--header", "X-Cfg: a", "--header", "te: gzip") as server:
        client = H2Client(server.addr)
        try:
            got, body = client.response(client.request("/"))
            assert body == b"hello h2" and got[b"x-cfg"] == b"a" and b"te" not in got, got
        finally:
            client.close()
