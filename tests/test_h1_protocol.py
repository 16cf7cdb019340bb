"""Sans-I/O tests of the compiled H1Protocol (hybrid._speedups.h1): request parsing and response framing."""

from __future__ import annotations

import h11
import httptools
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

h1 = pytest.importorskip("hybrid._speedups.h1", reason="compiled extension hybrid._speedups.h1 not built")
_create_h1_protocol = h1._create_h1_protocol
H1Error = h1.H1Error
Request = h1.Request
Data = h1.Data
EndOfMessage = h1.EndOfMessage

pytestmark = pytest.mark.timeout(60)


def new():
    return _create_h1_protocol(max_incomplete_event_size=None)


def normalize(events):
    """Events as comparable tuples; adjacent Data merged, empty Data dropped."""
    out = []
    for ev in events:
        if isinstance(ev, Request):
            out.append(
                (
                    "request",
                    ev.method,
                    ev.target,
                    ev.path,
                    ev.query or b"",
                    [tuple(h) for h in ev.headers],
                    ev.http_version,
                    bool(ev.keep_alive),
                    ev.upgrade,
                    bool(ev.expect_continue),
                )
            )
        elif isinstance(ev, Data):
            if not ev.data:
                continue
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + ev.data)
            else:
                out.append(("data", bytes(ev.data)))
        elif isinstance(ev, EndOfMessage):
            out.append(("eom",))
        else:
            raise AssertionError(f"unexpected event type {type(ev)!r}")
    return out


def feed_all(p, data: bytes, splits=()):
    events = []
    prev = 0
    for i in sorted(set(splits)) + [len(data)]:
        events.extend(p.feed(data[prev:i]))
        prev = i
    return events


def requests_of(events):
    return [e for e in events if isinstance(e, Request)]


def body_of(events):
    return b"".join(e.data for e in events if isinstance(e, Data))


# ---------------------------------------------------------------------------------------------------------
# Request parsing
# ---------------------------------------------------------------------------------------------------------
def test_simple_get():
    p = new()
    events = p.feed(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nX-Custom: Value\r\n\r\n")
    assert [type(e) for e in events if not (isinstance(e, Data) and not e.data)] == [Request, EndOfMessage]
    r = events[0]
    assert r.method == b"GET"
    assert r.target == b"/a/b?x=1&y=2"
    assert r.path == b"/a/b"
    assert r.query == b"x=1&y=2"
    assert r.http_version == "1.1"
    assert r.keep_alive is True or r.keep_alive == 1
    assert r.upgrade is None
    assert not r.expect_continue
    assert [tuple(h) for h in r.headers] == [(b"host", b"example.com"), (b"x-custom", b"Value")]


def test_path_is_raw_not_decoded():
    p = new()
    r = p.feed(b"GET /a%20b/%C3%BC?q=%20 HTTP/1.1\r\nHost: x\r\n\r\n")[0]
    assert r.path == b"/a%20b/%C3%BC"
    assert r.query == b"q=%20"
    assert r.target == b"/a%20b/%C3%BC?q=%20"


def test_no_query():
    r = new().feed(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")[0]
    assert r.path == b"/plain"
    assert (r.query or b"") == b""


def test_header_names_lowercased_values_kept_and_duplicates_in_order():
    r = new().feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: One\r\nx-a: Two\r\nACCEPT: Text/Html\r\n\r\n")[0]
    assert [tuple(h) for h in r.headers] == [
        (b"host", b"x"),
        (b"x-a", b"One"),
        (b"x-a", b"Two"),
        (b"accept", b"Text/Html"),
    ]
    for name, value in r.headers:
        assert type(name) is bytes and type(value) is bytes


def test_header_value_whitespace_trimmed():
    r = new().feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad:    padded value   \r\n\r\n")[0]
    assert dict(r.headers)[b"x-pad"] == b"padded value"


def test_content_length_body():
    events = new().feed(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
    assert isinstance(events[0], Request) and events[0].method == b"POST"
    assert body_of(events) == b"hello world"
    assert isinstance(events[-1], EndOfMessage)


def test_content_length_body_incremental():
    p = new()
    events = p.feed(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
    assert isinstance(events[0], Request)
    assert not any(isinstance(e, EndOfMessage) for e in events)
    more = p.feed(b"56789")
    assert body_of(events + more) == b"0123456789"
    assert isinstance(more[-1], EndOfMessage)


def test_chunked_body_with_extensions_and_trailers():
    data = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    events = new().feed(data)
    assert body_of(events) == b"hello world"
    assert isinstance(events[-1], EndOfMessage)


def test_pipelined_requests_in_one_buffer():
    data = (
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    events = normalize(new().feed(data))
    kinds = [e[0] for e in events]
    assert kinds == ["request", "eom", "request", "data", "eom", "request", "eom"]
    assert [e[2] for e in events if e[0] == "request"] == [b"/1", b"/2", b"/3"]
    assert events[3] == ("data", b"abc")


def test_head_split_byte_by_byte():
    data = b"GET /slow?x=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\n\r\n"
    p = new()
    events = []
    for i in range(len(data)):
        got = p.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert not requests_of(got), f"request emitted before the head was complete (byte {i})"
        events.extend(got)
    assert normalize(events) == normalize(new().feed(data))


def test_http10_keep_alive_rules():
    r = new().feed(b"GET / HTTP/1.0\r\n\r\n")[0]
    assert r.http_version == "1.0"
    assert not r.keep_alive
    r = new().feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0]
    assert r.keep_alive
    r = new().feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0]
    assert not r.keep_alive
    r = new().feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, Close\r\n\r\n")[0]
    assert not r.keep_alive, "a close token anywhere in Connection means close"


WS_HEAD = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


def test_websocket_upgrade_switches_when_the_server_performs_it():
    p = _create_h1_protocol(websocket=True)
    events = p.feed(WS_HEAD + b"\x81\x05hello")
    assert events[0].upgrade.lower() == b"websocket"
    assert p.trailing_data == b"\x81\x05hello", "bytes after the head belong to the new protocol"
    assert p.feed(b"more") == [] and p.trailing_data == b"\x81\x05hellomore"


def test_upgrade_declined_by_default_keeps_http():
    p = new()
    events = p.feed(WS_HEAD + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events[0].upgrade is None
    assert [type(e) for e in events] == [Request, EndOfMessage, Request, EndOfMessage]
    assert events[2].target == b"/next"


@pytest.mark.parametrize("split", [None, 70, 95, 120])
@pytest.mark.parametrize("chunked", [False, True])
def test_declined_upgrade_body_is_the_requests_body_never_a_request(split, chunked):
    """RFC 9110 section 7.8: an upgrade the server ignores leaves framing as it is (else: request smuggling)."""
    inner = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % len(inner)
    body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)) if chunked else inner
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n" + framing + b"\r\n"
            + body + b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    splits = () if split is None else (split,)
    got = normalize(feed_all(new(), data, splits))
    assert [e[0] for e in got] == ["request", "data", "eom", "request", "eom"]
    assert got[1] == ("data", inner)
    assert got[3][2] == b"/after"


def test_websocket_request_with_a_body_is_not_switched():
    p = _create_h1_protocol(websocket=True)
    events = p.feed(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    b"Content-Length: 3\r\n\r\nabc")
    assert events[0].upgrade is None
    assert normalize(events)[1:] == [("data", b"abc"), ("eom",)]
    assert p.trailing_data == b""


def test_events_before_an_error_ride_on_it():
    p = new()
    with pytest.raises(H1Error) as info:
        p.feed(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02 garbage\r\n\r\n")
    assert info.value.status_code == 400
    assert [type(e) for e in info.value.events] == [Request, EndOfMessage]
    with pytest.raises(H1Error) as again:
        p.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert again.value.events == [], "events are delivered once"


def test_input_after_connection_close_is_ignored():
    """RFC 9112 section 9.6: answer the request that said close; what follows it is not parsed (no 400)."""
    p = new()
    events = p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in events] == [Request, EndOfMessage]
    assert p.feed(b"\x00garbage") == []


def test_content_length_over_the_body_limit_is_413_before_the_body():
    p = _create_h1_protocol(max_body_size=10)
    with pytest.raises(H1Error) as info:
        p.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
    assert info.value.status_code == 413
    ok = _create_h1_protocol(max_body_size=10).feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(ok[0], Request)


def test_upgrade_header_without_connection_token_is_not_upgrade():
    r = new().feed(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")[0]
    assert not r.upgrade


def test_expect_continue_flag():
    r = new().feed(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")[0]
    assert r.expect_continue
    r = new().feed(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")[0]
    assert not r.expect_continue, "no 1xx to an HTTP/1.0 client (RFC 9110 section 15.2)"
    r = new().feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")[0]
    assert not r.expect_continue


# ---------------------------------------------------------------------------------------------------------
# Malformed input
# ---------------------------------------------------------------------------------------------------------
def error_of(data: bytes) -> H1Error:
    p = new()
    with pytest.raises(H1Error) as ei:
        p.feed(data)
        p.feed(b"")  # some errors can only be seen once more input is known
    err = ei.value
    assert isinstance(err.status_code, int)
    assert isinstance(err.reason, str) and err.reason
    return err


def test_error_bad_header_syntax_400():
    assert error_of(b"GET / HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n").status_code == 400


def test_error_space_before_colon_400():
    assert error_of(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n").status_code == 400


def test_error_unknown_method_501():
    assert error_of(b"FROBNICATE / HTTP/1.1\r\nHost: x\r\n\r\n").status_code == 501


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0"])
def test_error_unsupported_version_505(version):
    assert error_of(b"GET / " + version + b"\r\nHost: x\r\n\r\n").status_code == 505


@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/1.9"])
def test_later_minor_versions_are_served_as_1_1(version):
    """RFC 9110 section 2.5: a higher minor version is handled as the highest one the server implements."""
    req = new().feed(b"GET / " + version + b"\r\nHost: x\r\n\r\n")[0]
    assert req.http_version == "1.1" and req.keep_alive


@pytest.mark.parametrize("raw", [b"GET / HTTP/1.1\nHost: x\n\n", b"GET / HTTP/1.1\rHost: x\r\n\r\n",
                                 b"GET / HTTP/1.x\r\nHost: x\r\n\r\n"])
def test_malformed_line_endings_and_versions_are_400_not_505(raw):
    assert error_of(raw).status_code == 400


@pytest.mark.parametrize("host", [b"a b", b"user@h", b"a/b", b"h?x", b"h\x7f"])
def test_invalid_host_value_400(host):
    assert error_of(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").status_code == 400


@pytest.mark.parametrize(
    "host", [b"example.com", b"example.com:8080", b"[::1]:80", b"127.0.0.1", b"", b"xn--bcher-kva.de"]
)
def test_valid_host_values_accepted(host):
    assert isinstance(new().feed(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")[0], Request)


def test_asterisk_form_only_for_options():
    assert error_of(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n").status_code == 400
    assert new().feed(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")[0].target == b"*"


def test_error_content_length_and_transfer_encoding_400():
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert error_of(data).status_code == 400


def test_error_bad_content_length_400():
    assert error_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n").status_code == 400


def test_error_conflicting_content_lengths_400():
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    assert error_of(data).status_code == 400


def test_error_bad_chunk_size_400():
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    assert error_of(data).status_code == 400


def test_error_target_too_long_414():
    err = error_of(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert err.status_code in (414, 431)


def test_error_target_too_long_414_even_when_incomplete():
    """An overlong target is refused without waiting for the rest of the head."""
    err = error_of(b"GET /" + b"a" * 20000)
    assert err.status_code in (414, 431)


def test_error_header_section_too_large_431():
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 500) for i in range(80))  # ~40 KiB
    assert error_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n").status_code == 431


def test_error_header_section_too_large_431_incomplete():
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 500) for i in range(80))
    assert error_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers).status_code == 431


def test_h1error_is_an_exception():
    assert issubclass(H1Error, Exception)


# ---------------------------------------------------------------------------------------------------------
# Response framing
# ---------------------------------------------------------------------------------------------------------
def parse_response_head(raw: bytes):
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw!r}"
    lines = head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        n, _, v = line.partition(b":")
        headers.append((n.strip().lower(), v.strip()))
    return lines[0], headers, rest


def hvals(headers, name):
    return [v for n, v in headers if n == name]


def respond(request: bytes, status, headers, pieces, content_length=-1):
    p = new()
    events = p.feed(request)
    assert requests_of(events)
    out = p.send_response(status, headers, content_length)
    assert isinstance(out, bytes | bytearray)
    out = bytes(out)
    body_out = []
    for i, piece in enumerate(pieces):
        b = p.send_body(piece, i < len(pieces) - 1)
        assert isinstance(b, bytes | bytearray)
        body_out.append(bytes(b))
    return p, out, body_out


def test_response_with_content_length():
    p, head, body = respond(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        200,
        [(b"content-type", b"text/plain")],
        [b"hello"],
        content_length=5,
    )
    status_line, headers, rest = parse_response_head(head)
    assert status_line.startswith(b"HTTP/1.1 200")
    assert rest == b""
    assert hvals(headers, b"content-length") == [b"5"]
    assert not hvals(headers, b"transfer-encoding")
    assert hvals(headers, b"content-type") == [b"text/plain"]
    assert b"".join(body) == b"hello"
    assert p.keep_alive


def test_response_unknown_length_http11_is_chunked():
    p, head, body = respond(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, [], [b"abc", b"", b"defg", b""])
    _, headers, _ = parse_response_head(head)
    assert [v.lower() for v in hvals(headers, b"transfer-encoding")] == [b"chunked"]
    assert not hvals(headers, b"content-length")
    assert body[0] == b"3\r\nabc\r\n"
    assert body[1] == b"", "an empty non-final piece must not end the chunked body"
    assert body[2] == b"4\r\ndefg\r\n"
    assert body[3] == b"0\r\n\r\n"
    assert p.keep_alive


@pytest.mark.parametrize("size", [1, 15, 16, 255, 256, 4095, 65536, 1048575, 1048577])
def test_chunk_size_line_is_lowercase_hex_without_padding(size):
    data = b"x" * size
    _p, _head, body = respond(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, [], [data, b""])
    assert body[0] == b"%x\r\n" % size + data + b"\r\n"


def test_response_unknown_length_http10_closes():
    p, head, body = respond(b"GET / HTTP/1.0\r\n\r\n", 200, [], [b"abc", b"def"])
    status_line, headers, _ = parse_response_head(head)
    assert not hvals(headers, b"transfer-encoding")
    assert b"".join(body) == b"abcdef"
    assert not p.keep_alive


def test_response_http10_keep_alive_with_length():
    p, head, body = respond(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, [], [b"abc"], 3)
    _, headers, _ = parse_response_head(head)
    assert [v.lower() for v in hvals(headers, b"connection")] == [b"keep-alive"]
    assert p.keep_alive


def test_response_connection_close_request():
    p, head, body = respond(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, [], [b"x"], 1)
    assert not p.keep_alive


def test_head_response_has_headers_but_no_body_bytes():
    p, head, body = respond(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 200, [], [b"hello"], content_length=5)
    _, headers, rest = parse_response_head(head)
    assert hvals(headers, b"content-length") == [b"5"]
    assert rest == b""
    assert b"".join(body) == b""
    assert p.keep_alive


def test_head_response_unknown_length_no_body_bytes():
    p, head, body = respond(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 200, [], [b"hello", b"world"])
    assert b"".join(body) == b""
    # the response must stay parseable: the next request on the connection can be answered
    assert p.keep_alive


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status):
    p, head, body = respond(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", status, [], [b"ignored?", b""])
    status_line, headers, rest = parse_response_head(head)
    assert status_line.startswith(b"HTTP/1.1 %d" % status)
    assert not hvals(headers, b"transfer-encoding")
    assert rest == b""
    assert b"".join(body) == b""
    assert p.keep_alive


def test_pipelined_responses_answer_oldest_first():
    p = new()
    events = p.feed(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.0\r\n\r\n")
    assert [r.target for r in requests_of(events)] == [b"/1", b"/2", b"/3"]
    out = p.send_response(200, [], 3) + p.send_body(b"one", False)
    out += p.send_response(200, [], 3) + p.send_body(b"two", False)  # HEAD: no body bytes
    assert p.keep_alive
    out += p.send_response(200, [], -1) + p.send_body(b"three", True) + p.send_body(b"", False)  # 1.0: close
    assert not p.keep_alive
    client = h11.Connection(h11.CLIENT)
    results = []
    for method, target in ((b"GET", b"/1"), (b"HEAD", b"/2")):
        client.send(h11.Request(method=method, target=target, headers=[("host", "x")]))
        client.send(h11.EndOfMessage())
        results.append(h11_read(client, out if not results else b""))
        client.start_next_cycle()
    assert results[0] == (200, b"one")
    assert results[1] == (200, b"")
    rest = client.trailing_data[0]
    status_line, headers, body = parse_response_head(rest)
    assert status_line.startswith(b"HTTP/1.") and b" 200" in status_line
    assert not hvals(headers, b"transfer-encoding"), "HTTP/1.0 client must not get chunked"
    assert body == b"three"


def h11_read(client: h11.Connection, data: bytes, close_after: bool = False):
    if data:
        client.receive_data(data)
    if close_after:
        client.receive_data(b"")
    status, body = None, b""
    while True:
        ev = client.next_event()
        if ev is h11.NEED_DATA:
            raise AssertionError("h11 needs more data: response framing incomplete")
        if isinstance(ev, h11.Response):
            status = ev.status_code
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            return status, body
        elif isinstance(ev, h11.ConnectionClosed):
            return status, body


def test_date_and_server_headers_in_response():
    p, head, _ = respond(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, [], [b""], 0)
    _, headers, _ = parse_response_head(head)
    names = [n for n, _ in headers]
    # by default the protocol object writes both (the server's flags switch them off)
    assert b"date" in names
    assert b"server" in names


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)
RESERVED = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
}
header_name = TOKEN.filter(lambda s: s.lower() not in RESERVED)
header_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=30).map(
    lambda s: s.strip()
)
path_st = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~/%!$&'()*+,;=:@", max_size=30).map(
    lambda s: "/" + s
)
query_st = st.one_of(st.none(), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&-_.%+", max_size=20))


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    path = draw(path_st)
    query = draw(query_st)
    target = path + ("?" + query if query is not None else "")
    headers = [("Host", "example.test")] + draw(st.lists(st.tuples(header_name, header_value), max_size=6))
    body = b""
    framing = None
    if method in ("POST", "PUT", "PATCH"):
        body = draw(st.binary(max_size=300))
        framing = draw(st.sampled_from(["length", "chunked"]))
    raw_body = b""
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
        raw_body = body
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
        pieces, prev = [], 0
        for c in cuts + [len(body)]:
            if c > prev:
                pieces.append(body[prev:c])
            prev = c
        raw_body = b"".join(b"%x\r\n%s\r\n" % (len(x), x) for x in pieces) + b"0\r\n\r\n"
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    expected = {
        "method": method.encode(),
        "target": target.encode(),
        "path": path.encode(),
        "query": (query or "").encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "body": body,
    }
    return head.encode() + raw_body, expected


@given(st.lists(requests(), min_size=1, max_size=5), st.data())
def test_property_pipelined_stream_any_split_same_events(reqs, data):
    stream = b"".join(r for r, _ in reqs)
    whole = normalize(new().feed(stream))
    splits = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    split = normalize(feed_all(new(), stream, splits))
    assert split == whole
    # and the events are the requests that were sent
    got = []
    current = None
    for ev in whole:
        if ev[0] == "request":
            current = {
                "method": ev[1],
                "target": ev[2],
                "path": ev[3],
                "query": ev[4],
                "headers": ev[5],
                "body": b"",
            }
            assert ev[6] == "1.1" and ev[7] is True
        elif ev[0] == "data":
            current["body"] += ev[1]
        else:
            got.append(current)
    assert got == [e for _, e in reqs]


@given(requests())
def test_property_byte_by_byte(req):
    raw, expected = req
    whole = normalize(new().feed(raw))
    one = normalize(feed_all(new(), raw, range(1, len(raw))))
    assert one == whole


body_pieces = st.lists(st.binary(max_size=200), max_size=8)


@given(body_pieces, st.booleans(), st.sampled_from([200, 201, 404, 500]))
def test_property_response_round_trips_through_h11(pieces, known_length, status):
    pieces = pieces + [b""] if not pieces else pieces
    body = b"".join(pieces)
    p, head, out = respond(
        b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n",
        status,
        [(b"x-test", b"1")],
        pieces,
        len(body) if known_length else -1,
    )
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/x", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    got_status, got_body = h11_read(client, head + b"".join(out))
    assert (got_status, got_body) == (status, body)
    assert p.keep_alive
    assert client.our_state is h11.DONE and client.their_state is h11.DONE


@given(body_pieces, st.booleans())
def test_property_response_round_trips_through_httptools(pieces, known_length):
    pieces = pieces or [b""]
    body = b"".join(pieces)
    p, head, out = respond(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", 200, [], pieces, len(body) if known_length else -1)
    received = []
    done = []

    class Cb:
        def on_body(self, b):
            received.append(bytes(b))

        def on_message_complete(self):
            done.append(True)

    parser = httptools.HttpResponseParser(Cb())
    parser.feed_data(head + b"".join(out))
    assert done == [True]
    assert b"".join(received) == body
    assert parser.get_status_code() == 200


@given(body_pieces)
def test_property_head_never_has_body_bytes(pieces):
    assume(pieces)
    p, head, out = respond(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 200, [], pieces, sum(map(len, pieces)))
    assert head.endswith(b"\r\n\r\n")
    assert b"".join(out) == b""


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
def test_property_garbage_only_raises_h1error(data, splits):
    """Any bytes: the parser returns events or raises H1Error with an error status; nothing else escapes."""
    p = new()
    try:
        feed_all(p, data, [s for s in splits if s <= len(data)])
    except H1Error as err:
        assert 400 <= err.status_code < 600
        with pytest.raises(H1Error):  # the protocol stays failed
            p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


@given(requests(), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_property_mutated_requests_never_crash(req, pos, junk):
    raw, _ = req
    pos = pos % (len(raw) + 1)
    mutated = raw[:pos] + junk + raw[pos + len(junk) :]
    try:
        events = new().feed(mutated)
    except H1Error as err:
        assert 400 <= err.status_code < 600 and err.reason
    else:
        assert all(isinstance(e, Request | Data | EndOfMessage) for e in events)


def test_app_connection_close_header_is_not_repeated():
    p = new()
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = p.send_response(500, [(b"connection", b"close")], 0)
    assert head.lower().count(b"connection: close") == 1, head
    p.send_body(b"", False)
    assert not p.keep_alive


# ---------------------------------------------------------------------------------------------------------
# Framing bugs found by comparing with h11 (tests/test_h1_fuzz.py); each failed before its fix in h1.pyx
# ---------------------------------------------------------------------------------------------------------
CHUNKED_HEAD = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_trailer_fields_are_not_merged_into_the_request_headers():
    """RFC 9110 section 6.5.1: trailers must not be merged into the header section. They were appended to the
    Request already reported (a trailer 'Host: evil' showed up in the app's headers as a second Host)."""
    events = new().feed(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-Trailer: t\r\nHost: evil\r\n\r\n")
    assert normalize(events)[1:] == [("data", b"abc"), ("eom",)]
    assert [tuple(h) for h in events[0].headers] == [(b"host", b"x"), (b"transfer-encoding", b"chunked")]


def test_a_trailer_trickled_in_pieces_is_bounded():
    """httptools buffers a field split across reads without calling back: a trailer value streamed forever
    grew without bound (only the head was bounded). Now 431 past max_incomplete_event_size."""
    p = _create_h1_protocol(max_incomplete_event_size=4096)
    p.feed(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-Big: ")
    with pytest.raises(H1Error) as info:
        for _ in range(100):
            p.feed(b"v" * 1000)
    assert info.value.status_code == 431


def test_endless_chunk_extensions_are_bounded():
    p = _create_h1_protocol(max_incomplete_event_size=4096)
    p.feed(CHUNKED_HEAD + b"3;a=b")
    with pytest.raises(H1Error):
        for _ in range(100):
            p.feed(b";a=b" * 250)


def test_a_body_trickled_byte_by_byte_is_not_taken_for_stalled_framing():
    p = _create_h1_protocol(max_incomplete_event_size=1024)
    events = p.feed(CHUNKED_HEAD + b"1000\r\n")
    for _ in range(0x1000):
        events += p.feed(b"a")
    events += p.feed(b"\r\n0\r\n\r\n")
    assert normalize(events)[1:] == [("data", b"a" * 0x1000), ("eom",)]


@pytest.mark.parametrize("chunked", [False, True])
def test_declined_upgrade_with_a_19_digit_content_length_keeps_its_body(chunked):
    """A Content-Length of 19 digits or more (llhttp takes up to 2**64 - 1) was recorded as 'no body': a declined
    upgrade's body was then parsed as the next request (request smuggling, RFC 9110 section 7.8)."""
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
            b"Content-Length: 1000000000000000000\r\n\r\n" + smuggled)
    events = feed_all(new(), data, (len(data) - 10,) if chunked else ())
    assert [r.target for r in requests_of(events)] == [b"/up"]
    assert body_of(events) == smuggled


def test_19_digit_content_length_is_held_to_the_body_limit():
    """The same length skipped the 413 check made before the body is read."""
    with pytest.raises(H1Error) as info:
        _create_h1_protocol(max_body_size=10).feed(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000000\r\n\r\n")
    assert info.value.status_code == 413 and info.value.events == []


def test_content_length_past_the_largest_signed_64_bit_value_is_413():
    with pytest.raises(H1Error) as info:
        new().feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n")
    assert info.value.status_code == 413


@pytest.mark.parametrize("codings", [b"gzip, chunked", b"foo, chunked", b"gzip,chunked", b"gzip;q=1, chunked"])
def test_a_coding_other_than_chunked_is_501(codings):
    """RFC 9112 section 6.1: a transfer coding the server does not understand SHOULD get 501. llhttp accepted
    'gzip, chunked' and the app got a body still gzip-coded, as if it were the content."""
    with pytest.raises(H1Error) as info:
        new().feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + codings + b"\r\n\r\n0\r\n\r\n")
    assert info.value.status_code == 501 and info.value.events == []


@pytest.mark.parametrize("codings", [b"chunked", b"gzip", b"chunked\t"])
def test_transfer_encoding_in_http_1_0_is_400(codings):
    """RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing; it was parsed as
    chunked, and with 'Connection: keep-alive' the connection stayed open for the next request."""
    with pytest.raises(H1Error) as info:
        new().feed(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: " + codings
                   + b"\r\n\r\n0\r\n\r\n")
    assert info.value.status_code == 400 and info.value.events == []


@pytest.mark.parametrize("codings", [b"chunked\t", b"chunked;x=1", b"chunkedx", b"identity"])
def test_a_bad_final_coding_is_refused_before_the_request_is_reported(codings):
    """RFC 9112 section 6.3: final coding not chunked is 400. llhttp found these only after its headers-complete
    callback, so the Request rode on the error and the server started the app for it."""
    with pytest.raises(H1Error) as info:
        new().feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + codings + b"\r\n\r\n0\r\n\r\n")
    assert info.value.status_code == 400
    assert info.value.events == [], "the request must not reach the app"


def test_trailing_space_after_chunked_is_whitespace():
    events = new().feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked  \r\n\r\n1\r\na\r\n0\r\n\r\n")
    assert normalize(events)[1:] == [("data", b"a"), ("eom",)]


@pytest.mark.parametrize("after,status", [(b"GET /n HTTP/2.1\r\nHost: x\r\n\r\n", 505),
                                          (b"GET /n HTTP/1.1\r\n\r\n", 400),
                                          (b"POST /n HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n", 413)])
def test_an_error_right_after_a_declined_upgrade_keeps_its_status(after, status):
    """Found by fuzz/h1_fuzz.py: parsed in the same read as a declined upgrade, a request's H1Error lost its
    status to a generic 400 'User callback error' (its __context__ became the upgrade exception)."""
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\nContent-Length: 4\r\n\r\nbody"
            + after)
    for splits in ((), (len(data) - len(after),)):
        p = _create_h1_protocol(max_body_size=64)
        with pytest.raises(H1Error) as info:
            feed_all(p, data, splits)
        assert info.value.status_code == status, (splits, info.value.reason)
        if not splits:
            assert [type(e) for e in info.value.events] == [Request, Data, EndOfMessage]


@pytest.mark.parametrize("piece", [1460, 536, 100])
def test_a_head_under_the_limit_arriving_in_segments_is_accepted(piece):
    """Found by fuzz/h1_fuzz.py (431 or not depended on the cut): the bytes of fields already reported were counted
    twice while a head was incomplete, so a 12 KB head (limit 16 KiB) in 1460-byte TCP segments got 431."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 490) for i in range(24))
    head += b"\r\n"
    p = new()
    events = feed_all(p, head, range(piece, len(head), piece))
    assert [type(e) for e in events] == [Request, EndOfMessage]


def test_one_endless_field_streamed_in_pieces_is_431():
    p = new()
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with pytest.raises(H1Error) as info:
        for _ in range(40):
            p.feed(b"v" * 1000)
    assert info.value.status_code == 431


@pytest.mark.parametrize("first", [b"POST /up HTTP/1.0\r\n", b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"])
@pytest.mark.parametrize("framing", [b"Content-Length: 4\r\n\r\nbody",
                                     b"Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"])
def test_nothing_is_parsed_after_a_closing_declined_upgrade_with_a_body(first, framing):
    """Found by fuzz/h1_fuzz.py: the body of a declined upgrade is parsed by a fresh parser that did not know the
    request closes the connection, so a request after it was parsed and answered (RFC 9112 section 9.6)."""
    if first.startswith(b"POST /up HTTP/1.0") and framing.startswith(b"Transfer"):
        pytest.skip("Transfer-Encoding in HTTP/1.0 is refused (tested above)")
    data = first + b"Connection: Upgrade\r\nUpgrade: foo\r\n" + framing + b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n"
    for splits in ((), (len(data) - 20,)):
        events = feed_all(new(), data, splits)
        assert normalize(events)[1:] == [("data", b"body"), ("eom",)], splits


@pytest.mark.parametrize("value", [b"1_3", b"+13", b" 13", b"13 ", b"", b"0x1", b"1" * 19, b"-1"])
def test_app_content_length_must_be_digits(value):
    # RFC 9110 section 8.6: 1*DIGIT. int() would take "1_3" or "+13" and the head would carry a value no client
    # parses as the length we frame by.
    p = new()
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(h1.LocalProtocolError, match="Invalid Content-Length"):
        p.send_response(200, [(b"Content-Length", value)])


@pytest.mark.parametrize("sizes", [[1], [15, 16, 17], [255, 256, 4096, 65537]])
def test_chunked_framing_of_each_piece(sizes):
    p = new()
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    p.send_response(200, [])
    pieces = [bytes([65 + i]) * n for i, n in enumerate(sizes)]
    out = b"".join(p.send_body(piece, i < len(pieces) - 1) for i, piece in enumerate(pieces))
    expected = b"".join(b"%x\r\n" % len(piece) + piece + b"\r\n" for piece in pieces) + b"0\r\n\r\n"
    assert out == expected
    # the same through a real HTTP/1.1 client parser
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + out)
    got = []
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            got.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage) or event is h11.NEED_DATA:
            break
    assert b"".join(got) == b"".join(pieces)


@pytest.mark.parametrize("method, status, announced", [
    (b"HEAD", 200, [b"gzip, chunked"]),  # HEAD and 304 announce the GET's framing (RFC 9112 section 6.1)
    (b"GET", 304, [b"gzip, chunked"]),
    (b"GET", 204, []),  # a 204 MUST NOT carry Transfer-Encoding
])
def test_app_transfer_coding_on_responses_without_a_body(method, status, announced):
    p, head, body = respond(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n", status, [(b"transfer-encoding", b"gzip")],
                            [b"ignored", b""])
    _, headers, _ = parse_response_head(head)
    assert hvals(headers, b"transfer-encoding") == announced
    assert b"".join(body) == b""
    assert p.keep_alive


@pytest.mark.parametrize("headers, match", [
    ([(b"transfer-encoding", b"gzip;q=1")], "Invalid response Transfer-Encoding"),
    ([(b"transfer-encoding", b"gzip x")], "Invalid response Transfer-Encoding"),
    ([(b"transfer-encoding", b"gzip"), (b"content-length", b"3")], "Both Content-Length and Transfer-Encoding"),
])
def test_app_transfer_coding_that_cannot_be_framed_is_refused(headers, match):
    """Refused (the server answers 500 and closes) rather than sent with framing the client would misread."""
    p = new()
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(h1.LocalProtocolError, match=match):
        p.send_response(200, headers, 3)
