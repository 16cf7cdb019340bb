"""Malformed requests, app errors before/after the response started, send() misuse; the server survives."""

import json
import time

import httpx
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from hybrid.h2 import PREFACE as H2_PREFACE

from .support import IncompleteResponse, Server, build_request

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.basic:app"


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--host", "127.0.0.1", "--port", "0") as srv:
        yield srv
        assert srv.alive(), f"server died during the module:\n{srv.output}"


def assert_healthy(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        r = c.get("/")
        assert r.status_code == 200 and r.text == "hello, world"


def error_response(server, raw: bytes, *, chunks=None):
    """Send raw bytes; expect one error response and then the connection closed."""
    with server.connect() as c:
        if chunks:
            for part in chunks:
                c.send(part)
        else:
            c.send(raw)
        r = c.read_response()
        assert c.closed_by_peer(3), f"connection not closed after {r.status}"
        return r


# ---------------------------------------------------------------------------------------------------------
# Malformed requests
# ---------------------------------------------------------------------------------------------------------
def test_bad_header_line_400(server):
    r = error_response(server, b"GET / HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n")
    assert r.status == 400
    assert_healthy(server)


def test_garbage_request_line(server):
    r = error_response(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    assert r.status in (400, 501)
    assert_healthy(server)


def test_request_line_without_version_400(server):
    r = error_response(server, b"GET /\r\nHost: x\r\n\r\n")
    assert r.status in (400, 505)


def test_unknown_method_501(server):
    r = error_response(server, b"FROBNICATE / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 501
    assert_healthy(server)


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/0.9", "HTTP/3.0"])
def test_bad_http_version_505(server, version):
    r = error_response(server, f"GET / {version}\r\nHost: x\r\n\r\n".encode())
    assert r.status == 505


def test_target_too_long_414(server):
    r = error_response(server, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 414
    assert_healthy(server)


def test_target_just_under_limit_ok(server):
    with server.connect() as c:
        r = c.request("GET", "/" + "a" * 4000)
        assert r.status == 404  # the app's 404: the server accepted the target


def test_header_section_too_large_431(server):
    headers = [(f"X-Big-{i}", "v" * 500) for i in range(80)]  # ~40 KiB
    r = error_response(server, build_request("GET", "/", headers))
    assert r.status == 431
    assert_healthy(server)


def test_single_huge_header_431(server):
    r = error_response(server, build_request("GET", "/", [("X-Huge", "h" * 40000)]))
    assert r.status == 431


def test_endless_header_section_431_without_end(server):
    """The client never finishes the head: 431 once it is too large, no endless buffering."""
    with server.connect() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(200):
                c.send(b"X-More-%d: %s\r\n" % (i, b"z" * 500))
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert r.status == 431


def test_content_length_and_transfer_encoding_400(server):
    r = error_response(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert r.status == 400
    assert_healthy(server)


def test_invalid_content_length_400(server):
    r = error_response(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 12ab\r\n\r\n")
    assert r.status == 400


def test_negative_content_length_400(server):
    r = error_response(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert r.status == 400


def test_conflicting_content_lengths_400(server):
    r = error_response(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    assert r.status == 400


def test_bad_chunk_size_400(server):
    r = error_response(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    assert r.status == 400
    assert_healthy(server)


def test_unsupported_transfer_encoding(server):
    r = error_response(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc")
    assert r.status in (400, 501)


def test_http11_without_host_400(server):
    """RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request without a Host header field."""
    r = error_response(server, b"GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n")
    assert r.status == 400


def test_http11_two_host_headers_400(server):
    """RFC 9112 section 3.2: ... or with more than one Host header field line."""
    r = error_response(server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert r.status == 400


def test_http10_without_host_ok(server):
    with server.connect() as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello, world")


def test_obs_fold_rejected_or_unfolded(server):
    """RFC 9112 section 5.2: obs-fold is rejected with 400 or replaced by SP before the value is used."""
    with server.connect() as c:
        c.send(b"GET /scope HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n")
        r = c.read_response()
        if r.status != 400:
            assert r.status == 200
            headers = {n["__bytes__"]: v["__bytes__"] for n, v in json.loads(r.body)["headers"]}
            assert "\r" not in headers.get("x-folded", "") and "\n" not in headers.get("x-folded", "")


def test_bare_cr_in_header_value_rejected(server):
    """RFC 9112 section 2.2: a bare CR is rejected (400) or replaced by SP; never passed on."""
    with server.connect() as c:
        c.send(b"GET /scope HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n")
        r = c.read_response()
        if r.status != 400:
            headers = {n["__bytes__"]: v["__bytes__"] for n, v in json.loads(r.body)["headers"]}
            assert "\r" not in headers.get("x-cr", "")


@pytest.mark.parametrize("value", ["+5", "5 5", "0x5", "5.0", ""])
def test_odd_content_length_400(server, value):
    r = error_response(server, f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\nabcde".encode())
    assert r.status == 400


def test_chunked_not_last_transfer_coding_rejected(server):
    """RFC 9112 section 6.3: chunked not the final coding of a request: 400 and close."""
    r = error_response(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
    assert r.status in (400, 501)


def test_error_after_valid_pipelined_request(server):
    """A valid request followed by garbage in one buffer: the valid request is answered (it was whole before the
    bad bytes, docs/internals.md "Errors"), then the garbage gets its error status and a close."""
    with server.connect() as c:
        c.send(build_request("GET", "/") + b"NOT A REQUEST\x01\x02\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello, world"), r
        r = c.read_response()
        assert r.status == 400 and r.header("connection") == "close", r
        assert c.closed_by_peer()


def test_client_sends_nothing_and_closes(server):
    with server.connect():
        pass
    assert_healthy(server)


def test_client_closes_mid_head(server):
    for _ in range(5):
        with server.connect() as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ")
    assert_healthy(server)


def test_client_resets_connection(server):
    import socket
    import struct

    for _ in range(5):
        c = server.connect()
        c.send(b"GET /big?n=2000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST while the server may be writing
    assert_healthy(server)


# ---------------------------------------------------------------------------------------------------------
# Application errors
# ---------------------------------------------------------------------------------------------------------
def test_app_exception_before_start_500(server):
    """The app raised before starting its response: a complete 500 that says connection: close, then the close
    (docs/internals.md, Errors)."""
    with server.connect() as c:
        r = c.request("GET", "/error-before")
        assert (r.status, r.body) == (500, b"Internal Server Error\n"), r
        assert r.header("content-length") == "22" and "close" in r.header_all("connection"), r.headers
        assert c.closed_by_peer(3), "connection left open after the 500"
    assert_healthy(server)


def test_app_exception_is_logged(server):
    with server.connect() as c:
        assert c.request("GET", "/error-before").status == 500
    deadline = time.monotonic() + 3
    while "error-before-start (intentional)" not in server.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "error-before-start (intentional)" in server.output


def test_app_returns_without_response_500(server):
    with server.connect() as c:
        r = c.request("GET", "/no-response")
        assert (r.status, r.body) == (500, b"Internal Server Error\n"), r
        assert "close" in r.header_all("connection"), r.headers
        assert c.closed_by_peer(3), "connection left open after the 500"
    assert_healthy(server)


def test_app_exception_after_start_closes_connection(server):
    """The app sent its head (Content-Length: 100) and 10 body bytes, then raised: the client gets exactly those bytes
    and then the close, so it sees a truncated response, never a complete one nor a 500 glued after it."""
    with server.connect(timeout=3) as c:
        c.send(build_request("GET", "/error-after"))
        head = c.read_head()
        assert head.status == 200 and head.header("content-length") == "100", head.headers
        t0 = time.monotonic()
        rest = c.read_to_eof()  # times out (3 s) if the server leaves the connection open
        assert rest == b"0123456789", rest[:200]
        assert time.monotonic() - t0 < 1, "closed only after some timeout, not when the app failed"
    assert_healthy(server)


def test_app_exception_after_start_chunked_is_not_terminated(server):
    with server.connect(timeout=3) as c:
        c.send(build_request("GET", "/error-after-chunked"))
        head = c.read_head()
        assert head.status == 200 and head.header("transfer-encoding") == "chunked", head.headers
        data = c.read_to_eof()  # must end (3 s timeout otherwise): the server closes the connection
        # the chunk the app sent, and no last-chunk: a failed streamed response must not look complete
        assert data == b"7\r\npartial\r\n", data[:200]
    assert_healthy(server)


def test_app_exception_after_start_httpx_sees_error(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.get("/error-after")
        r = c.get("/")
        assert (r.status_code, r.text) == (200, "hello, world")


def _results(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        return c.get("/results").json()


@pytest.mark.parametrize(
    "kind",
    [
        "body-before-start",
        "second-start",
        "str-body",
        "bad-status",
        "status-out-of-range",
        "unknown-type",
        "header-injection",
        "bad-header-name",
        "str-header",
        "body-too-long",
    ],
)
def test_send_misuse_raises(server, kind):
    with server.connect() as c:
        c.send(build_request("GET", f"/send-check/{kind}"))
        try:
            r = c.read_response()
        except IncompleteResponse:
            r = None  # the response had already started: closed connection is the answer
        if r is not None:
            assert r.status == 500, f"misuse {kind} answered {r.status} {r.body!r}"
        if r is not None:
            assert r.header("x-injected") is None, "response splitting through a header value"
    res = _results(server)[f"send-check/{kind}"]
    assert res["raised"], f"send() did not raise for {kind}"
    assert res["message"], f"send() raised {res['raised']} without a message for {kind}"
    assert_healthy(server)


def test_server_survived_everything(server):
    assert server.alive(), server.output
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for _ in range(5):
            assert c.get("/").status_code == 200
            r = c.post("/echo", content=b"still ok")
            assert r.content == b"still ok"
        json.loads(c.get("/scope").content)


@pytest.fixture(scope="module")
def quick_server():
    """The basic app with 1 s idle and head timeouts, so an incomplete request is closed well within the client's
    timeout: input the server rightly waits on (a partial head) must end in a close, not a hang."""
    with Server(APP, "--host", "127.0.0.1", "--port", "0", "--timeout-keep-alive", "1",
                "--timeout-request-head", "1") as srv:
        yield srv


@settings(max_examples=40)
@given(st.binary(min_size=1, max_size=300))
@example(H2_PREFACE)  # (h2c: the server waits for a frame, then closes at the head timeout)
@example(b"PRI * HTTP/1.1")  # (llhttp waits for the rest of a preface after any PRI * head)
@example(b"PRI * HTTP/2.0")
def test_property_garbage_gets_error_or_close(quick_server, junk):
    """Random bytes as a request: an error status (or a plain close), never a hang or a dead server."""
    server = quick_server
    # Empty lines before a request line are ignored (RFC 9112 section 2.2): the server rightly waits for more.
    assume(junk.strip(b"\r\n"))
    sent = junk + b"\r\n\r\n"
    with server.connect(timeout=5) as c:
        try:
            c.send(sent)
            data = c.read_to_eof()
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if data and sent.startswith(H2_PREFACE):
            # h2c with prior knowledge (RFC 9113 section 3.3): HTTP/2 frames answer, the server's SETTINGS first
            # (type 4 on stream 0), then a GOAWAY for what followed or for the incomplete frame at the timeout.
            assert data[3] == 4 and data[5:9] == b"\0\0\0\0", data[:100]
        elif data:
            assert data.startswith(b"HTTP/1.1 "), data[:100]
            status = int(data[9:12])
            assert 400 <= status < 600, data[:100]
    assert server.alive(), server.output
