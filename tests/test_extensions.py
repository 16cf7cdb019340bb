"""ASGI response extensions over real sockets (issue 24): http.response.early_hint (103 Early Hints, RFC 8297) and
http.response.trailers (RFC 9112 section 7.1.2), each advertised in scope["extensions"] only where honoured, with
their error paths. Raw sockets see the exact bytes; httpx and curl show that real clients take them."""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import quote

import httpx
import pytest

from tests.support import Server, build_request

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.extensions:app"
HINT = "http.response.early_hint"
TRAILERS = "http.response.trailers"


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0") as server:
        yield server


def logged(srv, text: str, timeout: float = 5.0) -> bool:
    """Whether the server logs ``text`` within ``timeout`` (its output is read by another thread: a line about a
    response the client already saw may still be on its way)."""
    deadline = time.monotonic() + timeout
    while text not in srv.output:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def extensions(resp) -> set[str]:
    return set(resp.header("x-extensions").split(","))


# -- early hints ---------------------------------------------------------------------------------------------


def test_early_hint_goes_out_before_the_final_response(srv):
    with srv.connect() as c:
        links = quote("</a.css>; rel=preload|</b.js>; rel=preload; as=script")
        c.send(build_request("GET", f"/hint?links={links}&sleep=0.5"))
        hint = c.read_response()
        hinted = time.monotonic()
        assert hint.status == 103
        assert hint.header_all("link") == ["</a.css>; rel=preload", "</b.js>; rel=preload; as=script"]
        final = c.read_response()
        # the app sleeps 0.5 s after the hint: the 103 left at once, not with the final response
        assert time.monotonic() - hinted > 0.25
        assert (final.status, final.body) == (200, b"final")
        assert HINT in extensions(final)
        # the connection stays usable: the next request gets its own 103, then its response
        c.send(build_request("GET", "/hint"))
        assert c.read_response().status == 103
        assert c.read_response().body == b"final"


def test_early_hint_from_the_async_pool(srv):
    with srv.connect() as c:  # (Accept: text/event-stream: served by the async pool)
        c.send(build_request("GET", "/hint", headers=[("Accept", "text/event-stream")]))
        assert c.read_response().header_all("link") == ["</a.css>; rel=preload"]
        assert c.read_response().body == b"final"


def test_no_early_hints_to_http10(srv):
    with srv.connect() as c:
        c.send(build_request("GET", "/hint", version="HTTP/1.0"))
        data = c.read_to_eof()
    assert data.startswith(b"HTTP/1.1 200 "), data[:60]  # no 103: 1xx must not go to HTTP/1.0 (RFC 9110 15.2)
    assert b" 103 " not in data and data.endswith(b"final")
    assert b"x-extensions: http.response.pathsend,hybrid.request_id\r\n" in data  # and no early hints advertised to it


def test_early_hint_after_response_start_is_refused(srv):
    with srv.connect() as c:
        resp = c.request("GET", "/hint-after-start")
    assert resp.status == 200  # the first thing on the wire: no 103 after the final status was decided
    assert resp.body == b"refused ASGI: 'http.response.early_hint' sent after 'http.response.start'"


@pytest.mark.parametrize("links, error", [
    ("</a>%0D%0Ax-injected:%201", b"refused ValueError: ASGI: invalid early hint field"),  # CR LF: response splitting
    ("</a>%00", b"refused ValueError: ASGI: invalid early hint field"),
])
def test_early_hint_with_a_bad_link_is_refused(srv, links, error):
    with srv.connect() as c:
        resp = c.request("GET", f"/hint?links={links}")
    assert resp.status == 200 and resp.body.startswith(error), resp.body
    assert resp.header("x-injected") is None


def test_early_hint_with_httpx_and_curl(srv):
    # httpx (h11) skips the 1xx and reads the final response
    resp = httpx.get(f"{srv.url}/hint", timeout=5)
    assert (resp.status_code, resp.text) == (200, "final")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(["curl", "-sS", "-i", "--max-time", "5", f"{srv.url}/hint"], capture_output=True,
                         timeout=10, check=True).stdout
    assert out.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n"), out
    assert out.endswith(b"\r\n\r\nfinal")


# -- trailers ------------------------------------------------------------------------------------------------


def test_trailers_on_a_whole_body(srv):
    with srv.connect() as c:
        resp = c.request("GET", "/trailers?trailers=x-checksum=abc|grpc-status=0", headers=[("TE", "trailers")])
        assert resp.chunked, "a body that came whole still goes chunked, for its trailers"
        assert resp.body == b"part0;end"
        assert resp.trailers == [("x-checksum", "abc"), ("grpc-status", "0")]
        assert TRAILERS in extensions(resp)
        # keep-alive: the trailer section ended the message exactly
        assert c.request("GET", "/ext").body == b"ok"


def test_trailers_declared_in_a_start_message_without_headers(srv):
    with srv.connect() as c:
        resp = c.request("GET", "/trailers-no-headers", headers=[("TE", "trailers")])
    assert resp.body == b"bare" and resp.trailers == [("x-checksum", "abc")]


def test_trailers_in_several_messages_on_a_stream_from_a_worker(srv):
    with srv.connect() as c:
        resp = c.request("GET", "/trailers?chunks=3&trailers=x-a=1|x-b=2;x-c=3", headers=[("TE", "trailers")])
    assert resp.body == b"part0;part1;part2;end"
    assert resp.trailers == [("x-a", "1"), ("x-b", "2"), ("x-c", "3")]


def test_trailers_on_a_stream_in_the_async_pool(srv):
    # Accept: text/event-stream hands the request to the async pool before the app runs
    with srv.connect() as c:
        resp = c.request("GET", "/stream/trailers?chunks=2",
                         headers=[("TE", "trailers"), ("Accept", "text/event-stream")])
        assert resp.body == b"part0;part1;end" and resp.trailers == [("x-checksum", "abc")]
        assert c.request("GET", "/ext").body == b"ok"  # back in a worker, framing intact


def test_no_trailers_without_te_trailers(srv):
    with srv.connect() as c:
        resp = c.request("GET", "/trailers")  # the app declares trailers anyway: the body ends, no fields
        assert TRAILERS not in extensions(resp)
        assert resp.body == b"part0;end" and resp.trailers == []
        assert resp.raw_head and c.request("GET", "/ext").body == b"ok"
        resp = c.request("GET", "/trailers", headers=[("TE", "trailers")], version="HTTP/1.0")
    assert TRAILERS not in extensions(resp) and not resp.chunked and resp.body == b"part0;end"


def test_trailers_with_the_apps_content_length_or_head(srv):
    with srv.connect() as c:
        resp = c.request("GET", "/trailers?length=9", headers=[("TE", "trailers")])
        assert resp.header("content-length") == "9" and resp.body == b"part0;end" and resp.trailers == []
        resp = c.request("HEAD", "/trailers", headers=[("TE", "trailers")])
        assert resp.status == 200 and resp.body == b""
        assert c.request("GET", "/ext").body == b"ok"


@pytest.mark.parametrize("field", ["content-length=3", "transfer-encoding=chunked", "Host=evil", "set-cookie=a=b",
                                   "authorization=x", "trailer=x"])
def test_forbidden_trailer_field_cuts_the_response(srv, field):
    with srv.connect() as c:
        c.send(build_request("GET", f"/trailers?trailers={field}", headers=[("TE", "trailers")]))
        data = c.read_to_eof()  # closed after the body: no last chunk, so the client sees an incomplete message
    # (one chunk or two: the worker may hold the first a moment) the body, and then no last chunk
    assert data.endswith(b"end\r\n") and b"\r\n0\r\n" not in data, data[-60:]
    name = field.split("=")[0]
    assert logged(srv, f"ValueError: ASGI: '{name}' is not allowed in trailers")


@pytest.mark.parametrize("field, named", [("bad%20name=1", "b'bad name'"), ("x-ok=a%0D%0Ax-injected:%201", "b'x-ok'")])
def test_invalid_trailer_field_cuts_the_response(srv, field, named):
    with srv.connect() as c:
        c.send(build_request("GET", f"/trailers?trailers={field}", headers=[("TE", "trailers")]))
        data = c.read_to_eof()
    assert data.endswith(b"end\r\n") and b"\r\n0\r\n" not in data and b"x-injected" not in data
    assert logged(srv, f"ValueError: ASGI: invalid trailer field {named}")


def test_trailers_out_of_order_are_refused(srv):
    with srv.connect() as c:
        resp = c.request("GET", "/trailers-misuse?declare=1", headers=[("TE", "trailers")])
        assert resp.body == b"refused ASGI: 'http.response.trailers' sent before the last 'http.response.body'"
        resp = c.request("GET", "/trailers-misuse", headers=[("TE", "trailers")])
        assert resp.body == (b"xrefused ASGI: 'http.response.trailers' sent without 'trailers': True in the "
                             b"response start")


def test_trailers_with_curl(srv):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(["curl", "-sS", "--max-time", "5", "-H", "TE: trailers", "-D", "/dev/stderr",
                          f"{srv.url}/trailers?chunks=2&trailers=x-checksum=abc"],
                         capture_output=True, timeout=10, check=True)
    assert out.stdout == b"part0;part1;end"
    assert out.stderr.endswith(b"\r\n\r\nx-checksum: abc\r\n")  # curl's header dump ends with the trailers
