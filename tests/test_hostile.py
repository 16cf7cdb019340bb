"""Hostile and broken HTTP/1.1 requests against a real server (issue 12, first part): each gets the status its RFC
rule asks for, and a connection whose framing is in doubt is closed, never reused."""

from __future__ import annotations

import pytest

from tests.support import Server, build_request

APP = "tests.apps.correctness:app"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        yield srv


@pytest.fixture(scope="module")
def basic_server():
    # short head and body timeouts for the slow-client tests
    with Server("tests.apps.basic:app", "--port", "0", "--no-access-log", "--timeout-request-head", "2",
                "--timeout-request-body", "0.5", "--timeout-keep-alive", "10") as srv:
        yield srv


REJECTED = [
    # (rule, raw request, status)
    ("RFC 9112 3.2: a Host value that is not a valid host is 400", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("RFC 9112 3.2: userinfo is not allowed in Host", b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", 400),
    ("RFC 9112 3.2: no Host in an HTTP/1.1 request", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("RFC 9112 3.2: two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("RFC 9112 2.2: a bare LF ends no line", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("RFC 9112 2.2: a bare CR is not a line ending", b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400),
    ("RFC 9112 3.2.4: asterisk-form is for OPTIONS only", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 6.1: Content-Length together with Transfer-Encoding",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("RFC 9112 6.3: duplicate Content-Length",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("RFC 9112 6.3: a final coding other than chunked",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("RFC 9112 5.2: obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    ("RFC 9112 5.1: whitespace between a field name and the colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("RFC 9110 2.5 / 15.6.6: a major version other than 1", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    # -- Content-Length (RFC 9112 6.3 (5), RFC 9110 8.6: 1*DIGIT; an invalid one is an unrecoverable framing error)
    ("RFC 9112 6.3: two different Content-Length values",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("RFC 9112 6.3: a Content-Length list, even of equal values (we do not merge it)",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("RFC 9110 8.6: a negative Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("RFC 9110 8.6: a signed Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("RFC 9110 8.6: a hexadecimal Content-Length",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc", 400),
    ("RFC 9110 8.6: digits with a space inside", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n", 400),
    ("RFC 9110 8.6: an empty Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400),
    ("RFC 9110 8.6: a Content-Length that overflows 64 bits",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    ("RFC 9110 8.6: a Content-Length past 2**63 - 1 (larger than any body we can take)",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n", 413),
    # -- Transfer-Encoding (RFC 9112 6.1, 6.3 (4), 7.1)
    ("RFC 9112 6.1: Content-Length before Transfer-Encoding: 400 and close, not 'chunked wins'",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("RFC 9112 6.3: chunked not the final coding",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("RFC 9112 6.3: an unknown final coding",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: frob\r\n\r\n", 400),
    ("RFC 9112 6.3: 'chunked' with a parameter is not chunked",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", 400),
    ("RFC 9112 7.1: chunked applied twice",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("RFC 9112 6.1: a coding we do not implement before chunked is 501",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("RFC 9112 6.1: an unknown coding before chunked is 501",
     b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: frob, chunked\r\n\r\n0\r\n\r\n", 501),
    ("RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing",
     b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # -- field syntax (RFC 9112 5, 5.1, 5.2; RFC 9110 5.1, 5.5, 5.6.2)
    ("RFC 9112 5.2: obs-fold with a tab", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n", 400),
    ("RFC 9112 5.2: obs-fold right after the request line",
     b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    ("RFC 9112 5.1: a tab between a field name and the colon", b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400),
    ("RFC 9110 5.6.2: NUL in a field name", b"GET / HTTP/1.1\r\nHost: x\r\nX\x00Y: v\r\n\r\n", 400),
    ("RFC 9110 5.6.2: '@' (not a tchar) in a field name", b"GET / HTTP/1.1\r\nHost: x\r\nX@Y: v\r\n\r\n", 400),
    ("RFC 9110 5.6.2: a space inside a field name", b"GET / HTTP/1.1\r\nHost: x\r\nX Y: v\r\n\r\n", 400),
    ("RFC 9110 5.6.2: a non-ASCII byte in a field name", b"GET / HTTP/1.1\r\nHost: x\r\nX\xffY: v\r\n\r\n", 400),
    ("RFC 9110 5.1: an empty field name", b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400),
    ("RFC 9110 5.5: NUL in a field value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    ("RFC 9110 5.5: a control byte in a field value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400),
    ("RFC 9110 5.5: DEL in a field value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", 400),
    ("RFC 9112 2.2 / RFC 9110 5.5: a bare CR in a field value", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400),
    ("RFC 9112 2.2: a bare LF ending one field line", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\nY: b\r\n\r\n", 400),
    ("RFC 9112 2.2: a bare LF ending the head", b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    # -- request line and target (RFC 9112 3, 3.2; RFC 3986)
    ("RFC 9112 3.2: a control byte in the target", b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 3.2: NUL in the target", b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 3.2: DEL in the target", b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 3.2: a non-ASCII byte in the target", b"GET /a\xffb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 3.2: a tab in the target", b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 3: a space in the target (three parts only)", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 3.2: a target in none of the four forms", b"GET abc HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 3: whitespace after the version", b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 2.3: the version is case-sensitive", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("RFC 9112 2.2: a bare CR ending the request line", b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400),
    ("RFC 9110 9.1: a method we do not implement is 501", b"FROB / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ("RFC 9110 9.1: methods are case-sensitive ('get' is unknown)", b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
]


@pytest.mark.parametrize("rule,raw,status", REJECTED, ids=[r[0].split(":")[0] + " " + str(i)
                                                           for i, r in enumerate(REJECTED)])
def test_rejected_with_status_and_closed(server, rule, raw, status):
    with server.connect() as c:
        c.send(raw)
        resp = c.read_response()
        assert resp.status == status, rule
        assert resp.header("connection") == "close", rule
        assert c.closed_by_peer(), f"{rule}: the connection must not be reused"


CHUNKED_POST = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

BAD_BODIES = [
    # (rule, chunked body after the head); each after a valid head: the request may reach the app, the body never
    ("RFC 9112 7.1: a chunk size past 2**64", b"10000000000000000\r\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1: a chunk size of 20 hex digits", b"ffffffffffffffffffff\r\n"),
    ("RFC 9112 7.1: a chunk size that is not hex", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("RFC 9112 7.1: a negative chunk size", b"-3\r\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1: whitespace after the chunk size", b"3 \r\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1: a bare LF after the chunk size", b"3\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1: chunk data longer than its size", b"3\r\nabcXX\r\n0\r\n\r\n"),
    ("RFC 9112 7.1: chunk data ended by a bare LF", b"3\r\nabc\n0\r\n\r\n"),
    ("RFC 9112 7.1.1: a chunk extension without a name", b"3;\r\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1.1: an unterminated quoted chunk-ext value", b"3;a=\"b\r\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1.1: a control byte in a chunk extension", b"3;a\x01\r\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1.1 / 2.2: a bare CR in a chunk extension", b"3;a\rx\r\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1.1 / 2.2: a bare LF ending a chunk extension", b"3;a\nabc\r\n0\r\n\r\n"),
    ("RFC 9112 7.1.2: obs-fold in the trailer section", b"0\r\nX: a\r\n b\r\n\r\n"),
    ("RFC 9112 7.1.2: an invalid trailer field line", b"0\r\nX Y\r\n\r\n"),
]


@pytest.mark.parametrize("rule,body", BAD_BODIES, ids=[r[0].split(":")[0] + " " + str(i)
                                                        for i, r in enumerate(BAD_BODIES)])
def test_malformed_chunked_body_gets_400_and_is_closed(server, rule, body):
    """The head was fine, so the app may have started; its body never completes. The client gets 400 and a close,
    never the app's answer to a truncated body, and the request pipelined behind it is never served."""
    with server.connect() as c:
        c.send(CHUNKED_POST + body + b"GET /after-bad-chunk HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 400, (rule, resp.status, resp.body)
        assert resp.header("connection") == "close", rule
        assert c.closed_by_peer(), f"{rule}: the connection must not be reused"
    with server.connect() as c:
        assert b"/after-bad-chunk" not in c.request("GET", "/calls").body


@pytest.mark.parametrize("rule,raw,status", REJECTED[:6] + REJECTED[13:40:3],
                         ids=lambda v: v.split(":")[0] if isinstance(v, str) else None)
def test_a_request_pipelined_after_a_rejected_one_is_never_served(server, rule, raw, status):
    """Never reuse a connection whose framing is in doubt: what follows the bad request is not parsed."""
    marker = f"/pipelined-after-{hash(rule) & 0xFFFFFF}"
    with server.connect() as c:
        c.send(raw + build_request("GET", marker))
        resp = c.read_response()
        assert resp.status == status, rule
        assert c.closed_by_peer(), rule
    with server.connect() as c:
        assert marker.encode() not in c.request("GET", "/calls").body, rule


def test_declined_upgrade_with_a_19_digit_content_length_smuggles_nothing(server):
    """The body of an upgrade the server declines is the request's body, however long its Content-Length claims to
    be (RFC 9110 7.8): it was parsed as a second request when the length had 19 digits or more."""
    smuggled = build_request("GET", "/smuggled-19")
    with server.connect() as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n"
               b"Content-Length: 1000000000000000000\r\n\r\n" + smuggled)
        with pytest.raises(TimeoutError):
            c.sock.settimeout(1.0)
            c.read_response()  # the app waits for the rest of the body: no answer, least of all to /smuggled-19
    with server.connect() as c:
        assert b"/smuggled-19" not in c.request("GET", "/calls").body


def test_trailers_do_not_reach_the_app_as_headers(basic_server):
    """RFC 9110 6.5.1: trailer fields are not merged into the header section (a trailer 'Host' used to be)."""
    import json

    with basic_server.connect() as c:
        c.send(b"POST /scope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\nHost: evil\r\nX-Trailer: t\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 200
        headers = [[part["__bytes__"] for part in pair] for pair in json.loads(resp.body)["headers"]]
        assert headers == [["host", "x"], ["transfer-encoding", "chunked"]]
        assert c.request("GET", "/").status == 200, "a well-formed chunked request keeps the connection"


def test_http_1_2_is_served_as_http_1_1(server):
    """RFC 9110 2.5: a higher minor version is served with the highest we implement."""
    with server.connect() as c:
        c.send(b"GET /v HTTP/1.2\r\nHost: x\r\n\r\n")
        resp = c.read_response()
        assert (resp.status, resp.http_version, resp.body) == (200, "HTTP/1.1", b"GET /v body=0:")
        assert c.request("GET", "/again").status == 200  # still keep-alive


def test_options_asterisk_reaches_the_app(server):
    with server.connect() as c:
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200


def test_connection_close_then_pipelined_request_answers_the_first_only(server):
    """RFC 9112 9.6: answer the request that said close, then close; what follows is ignored."""
    with server.connect() as c:
        c.send(build_request("GET", "/first", [("Connection", "close")]) + build_request("GET", "/second"))
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, b"GET /first body=0:")
        assert resp.header("connection") == "close"
        assert c.closed_by_peer()
    with server.connect() as c:
        counted = c.request("GET", "/calls").body
    assert b'"/second"' not in counted


# -- --timeout-request-body: a body that stops arriving -----------------------------------------------------------


@pytest.fixture(scope="module")
def body_timeout_server():
    with Server(APP, "--port", "0", "--no-access-log", "--timeout-request-body", "1") as srv:
        yield srv


@pytest.mark.parametrize("where", ["worker", "pool", "async-mode"])
def test_stalled_body_gets_408_and_is_closed(body_timeout_server, where):
    """Content-Length: 100 and 5 bytes sent: the connection must not stay open forever, whether the request is
    served by a worker, handed to the async pool first (it accepts text/event-stream), or by --mode async."""

    headers = [("Content-Length", "100")]
    if where == "pool":
        headers.append(("Accept", "text/event-stream"))
    if where == "async-mode":
        with Server(APP, "--port", "0", "--no-access-log", "--timeout-request-body", "1", "--mode", "async") as srv:
            _stalled_body(srv, headers)
        return
    _stalled_body(body_timeout_server, headers)


def _stalled_body(server, headers):
    import time

    with server.connect(timeout=10) as c:
        started = time.monotonic()
        c.send(build_request("POST", "/upload", headers) + b"12345")
        resp = c.read_response()
        took = time.monotonic() - started
        assert resp.status == 408 and resp.header("connection") == "close"
        assert c.closed_by_peer()
    assert 0.9 <= took < 3.0, f"answered after {took:.2f} s with --timeout-request-body 1"


def test_slow_but_steady_body_is_not_cut(body_timeout_server):
    """The bound is on a stall and on a minimum average rate (500 B/s), not on the whole upload: 600 bytes every
    0.3 s for 3 s (2 KB/s) is served whole."""
    import time

    parts = [bytes([48 + i]) * 600 for i in range(10)]
    with body_timeout_server.connect(timeout=10) as c:
        c.send(build_request("POST", "/upload", [("Content-Length", "6000")]))
        for part in parts:
            time.sleep(0.3)
            c.send(part)
        resp = c.read_response()
    assert (resp.status, resp.body) == (200, b"POST /upload body=6000:" + b"".join(parts))


def test_slowloris_body_that_never_stalls_is_cut_by_the_minimum_rate(body_timeout_server):
    """A byte every 0.3 s never stalls for the 1 s bound, but averages 3 B/s: once the body has taken the bound, it
    is below the minimum rate (500 B/s) and gets 408 (without the rate it would hold the connection for ever)."""
    with body_timeout_server.connect(timeout=10) as c:
        c.send(build_request("POST", "/upload", [("Content-Length", "1000")]))
        took = _trickle(c, b"x" * 1000, 0.3, 8.0)
        resp = c.read_response()
        assert resp.status == 408 and resp.header("connection") == "close"
        assert c.closed_by_peer()
    assert 0.9 <= took < 3.0, f"answered after {took:.2f} s with --timeout-request-body 1"


# -- slow clients (slowloris): --timeout-request-head bounds a whole head, --timeout-request-body a stall --------


def _trickle(c, data: bytes, interval: float, limit: float) -> float:
    """Send ``data`` a byte every ``interval`` s until the server answers or closes; returns when it did."""
    import select
    import time

    started = time.monotonic()
    for i in range(len(data)):
        if time.monotonic() - started > limit:
            break
        try:
            c.send(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        readable, _, _ = select.select([c.sock], [], [], interval)
        if readable:
            return time.monotonic() - started
    return time.monotonic() - started


def test_slowloris_head_one_byte_a_second_gets_408_within_the_head_timeout(basic_server):
    """--timeout-request-head 2: a head trickled a byte a second (it would take a minute) is answered 408 and
    closed 2 s after its first byte (the check runs once a second: by 3.5 s at the latest)."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    with basic_server.connect(timeout=10) as c:
        took = _trickle(c, head, 1.0, 8.0)
        resp = c.read_response()
        assert resp.status == 408 and resp.header("connection") == "close"
        assert c.closed_by_peer()
    assert 1.9 <= took < 3.5, f"answered after {took:.2f} s with --timeout-request-head 2"


def test_slow_but_steady_head_within_the_bound_is_served(basic_server):
    """A head that completes in 1.5 s (a byte every 50 ms), under the 2 s bound, is served as usual."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with basic_server.connect(timeout=10) as c:
        took = _trickle(c, head, 1.5 / len(head), 5.0)
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, b"hello, world")
        assert c.request("GET", "/").status == 200
    assert took >= 1.0


def test_slowloris_body_one_byte_a_second_gets_408_within_the_body_timeout(basic_server):
    """--timeout-request-body 0.5: a body trickled a byte a second stalls longer than the bound after every byte,
    so it is answered 408 and closed after its first stall (by 0.5 s plus the check's granularity)."""
    with basic_server.connect(timeout=10) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "100")]))
        took = _trickle(c, b"x" * 100, 1.0, 8.0)
        resp = c.read_response()
        assert resp.status == 408 and resp.header("connection") == "close"
        assert c.closed_by_peer()
    assert took < 2.5, f"answered after {took:.2f} s with --timeout-request-body 0.5"


def test_slow_but_steady_body_within_the_bound_is_served(basic_server):
    """300 bytes every 0.2 s (under the 0.5 s stall bound, 1.5 KB/s: above the minimum rate) for 4 s: the upload
    is not cut and reaches the app whole."""
    import time

    data = bytes(range(48, 68)) * 300
    with basic_server.connect(timeout=10) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", str(len(data)))]))
        started = time.monotonic()
        for i in range(0, len(data), 300):
            time.sleep(0.2)
            c.send(data[i:i + 300])
        took = time.monotonic() - started
        resp = c.read_response()
    assert (resp.status, resp.body) == (200, data)
    assert took >= 3.5


# -- memory under a flood of rejected requests ------------------------------------------------------------------

FLOOD_REQUESTS = 100_000
FLOOD_THREADS = 4
MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
    b"GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /flood HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # reaches the app first
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n",  # 431
]


def _flood(addr, count: int, offset: int) -> int:
    import socket

    rejected = 0
    for i in range(count):
        raw = MALFORMED[(i + offset) % len(MALFORMED)]
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(raw)
            answer = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                answer += chunk
        if answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ", b"HTTP/1.1 501 ")):
            rejected += 1
    return rejected


def _flood_all(addr, total: int) -> int:
    from concurrent.futures import ThreadPoolExecutor

    per = total // FLOOD_THREADS
    with ThreadPoolExecutor(FLOOD_THREADS) as pool:
        return sum(pool.map(lambda k: _flood(addr, per, k), range(FLOOD_THREADS)))


@pytest.mark.timeout(180)
def test_memory_stays_flat_across_100k_rejected_requests():
    """100,000 malformed requests (several kinds, one connection each: each is answered and closed) from a few
    threads: the server's RSS grows by less than 10 MB after a warmup."""
    import time

    import psutil

    with Server(APP, "--port", "0", "--no-access-log") as srv:
        proc = psutil.Process(srv.pid)
        assert _flood_all(srv.addr, 5_000) == 5_000  # warmup: allocator pools, caches, lazily built objects
        before = proc.memory_info().rss
        started = time.monotonic()
        assert _flood_all(srv.addr, FLOOD_REQUESTS) == FLOOD_REQUESTS
        took = time.monotonic() - started
        after = proc.memory_info().rss
        with srv.connect() as c:
            assert c.request("GET", "/still-serving").status == 200
    grown = (after - before) / 2**20
    print(f"\n{FLOOD_REQUESTS} rejected requests in {took:.1f} s; RSS {before / 2**20:.1f} -> "
          f"{after / 2**20:.1f} MB ({grown:+.2f} MB)")
    assert grown < 10, f"RSS grew by {grown:.1f} MB over {FLOOD_REQUESTS} rejected requests"
