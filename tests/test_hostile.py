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
    """The bound is on a stall, not on the whole upload: a byte every 0.3 s for 3 s is served."""
    import time

    with body_timeout_server.connect(timeout=10) as c:
        c.send(build_request("POST", "/upload", [("Content-Length", "10")]))
        for i in range(10):
            time.sleep(0.3)
            c.send(str(i).encode())
        resp = c.read_response()
    assert (resp.status, resp.body) == (200, b"POST /upload body=10:0123456789")
