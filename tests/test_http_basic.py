"""HTTP/1.1 semantics over real sockets: keep-alive, HTTP/1.0, pipelining, HEAD, framing, default headers."""

import email.utils
import gzip
import socket
import time

import httpx
import pytest

from .support import RawClient, Server, build_request

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.basic:app"


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--host", "127.0.0.1", "--port", "0", "--timeout-keep-alive", "30") as srv:
        yield srv
        assert srv.alive(), f"server died during the module:\n{srv.output}"


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        yield c


def test_ready_line_and_port(server):
    assert server.host == "127.0.0.1"
    assert 0 < server.port < 65536
    with socket.create_connection(server.addr, timeout=2):
        pass


def test_get_root(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.text == "hello, world"
    assert r.headers["content-length"] == "12"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.http_version == "HTTP/1.1"


def test_not_found_from_app(client):
    r = client.get("/definitely/not/here")
    assert r.status_code == 404
    assert r.text == "not found"


def test_default_server_and_date_headers(client):
    r = client.get("/")
    assert r.headers.get("server", "").startswith("hybrid"), r.headers
    date = r.headers.get("date")
    assert date, r.headers
    parsed = email.utils.parsedate_to_datetime(date)
    assert abs(parsed.timestamp() - time.time()) < 5
    # IMF-fixdate exactly (RFC 9110 section 5.6.7): English names, two-digit day, "GMT"; hybrid formats it in C
    assert date == email.utils.formatdate(parsed.timestamp(), usegmt=True), date
    assert len(r.headers.get_list("date")) == 1 and len(r.headers.get_list("server")) == 1


def test_date_header_is_refreshed(server):
    with server.connect() as c:
        first = email.utils.parsedate_to_datetime(c.request("GET", "/").header("date"))
        time.sleep(2.1)
        second = email.utils.parsedate_to_datetime(c.request("GET", "/").header("date"))
    assert (second - first).total_seconds() >= 1


def test_response_headers_from_app_kept(client):
    r = client.get("/headers-out")
    assert r.status_code == 201
    assert r.headers.get_list("x-dup") == ["one", "two"]
    assert r.headers["x-mixed-case"] == "Value"
    assert r.text == "ok"
    assert r.headers.get_list("content-length") == ["2"]


def test_keep_alive_reuses_connection(server):
    with server.connect() as c:
        ports = set()
        for _ in range(5):
            r = c.request("GET", "/scope")
            assert r.status == 200
            assert (r.header("connection") or "").lower() != "close"
            import json

            ports.add(json.loads(r.body)["client"][1])
        assert ports == {c.sock.getsockname()[1]}


def test_many_requests_on_one_httpx_client(client):
    for i in range(50):
        r = client.post("/echo", content=b"n=%d" % i)
        assert r.status_code == 200 and r.content == b"n=%d" % i


def test_http11_connection_close(server):
    with server.connect() as c:
        r = c.request("GET", "/", headers=[("Connection", "close")])
        assert r.status == 200 and r.body == b"hello, world"
        assert r.header_all("connection") == ["close"], r.headers
        assert c.closed_by_peer(), "server must close after Connection: close"


def test_http10_closes_by_default(server):
    with server.connect() as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello, world"
        assert r.header("content-length") == "12" and r.header_all("connection") == ["close"], r.headers
        assert c.closed_by_peer()


def test_http10_keep_alive(server):
    with server.connect() as c:
        for _ in range(3):
            c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and r.body == b"hello, world"
            assert (r.header("connection") or "").lower() == "keep-alive"
        assert not c.closed_by_peer(0.3)


def test_http10_response_version_and_scope(server):
    import json

    with server.connect() as c:
        c.send(b"GET /scope HTTP/1.0\r\n\r\n")
        r = c.read_response()
        # RFC 9110 section 6.2: the server answers with its own version (1.1) in a form a 1.0 client understands
        assert r.raw_head.startswith(b"HTTP/1.1 200 OK\r\n"), r.raw_head
        assert r.header("transfer-encoding") is None and r.header("content-length") == str(len(r.body)), r.headers
        assert r.header_all("connection") == ["close"], r.headers
        assert json.loads(r.body)["http_version"] == "1.0"
        assert c.closed_by_peer(), "an HTTP/1.0 request without keep-alive closes the connection"


def test_pipelined_requests_answered_in_order(server):
    reqs = (
        build_request("GET", "/")
        + build_request("POST", "/echo", body=b"first-body")
        + build_request("HEAD", "/")
        + build_request("GET", "/status/204")
        + build_request("POST", "/echo", body=b"second-body")
        + build_request("GET", "/nolength")
        + build_request("GET", "/stream?n=2")
    )
    with server.connect() as c:
        c.send(reqs)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response("HEAD")
        r4 = c.read_response()
        r5 = c.read_response()
        r6 = c.read_response()
        r7 = c.read_response()
        assert (r1.status, r1.body) == (200, b"hello, world")
        assert (r2.status, r2.body) == (200, b"first-body")
        assert (r3.status, r3.body, r3.header("content-length")) == (200, b"", "12")
        assert r4.status == 204
        assert (r5.status, r5.body) == (200, b"second-body")
        assert (r6.status, r6.body) == (200, b"nolength-body")
        assert (r7.status, r7.body) == (200, b"part-0\npart-1\n")
        assert all((r.header("connection") or "") != "close" for r in (r1, r2, r3, r4, r5, r6, r7))
        assert not c.closed_by_peer(0.3)
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")


def test_many_pipelined_requests(server):
    n = 100
    with server.connect() as c:
        c.send(b"".join(build_request("POST", "/echo", body=b"req-%03d" % i) for i in range(n)))
        for i in range(n):
            r = c.read_response()
            assert r.status == 200 and r.body == b"req-%03d" % i


def test_pipelined_with_final_connection_close(server):
    with server.connect() as c:
        c.send(build_request("GET", "/") + build_request("GET", "/", headers=[("Connection", "close")]))
        first, second = c.read_response(), c.read_response()
        assert (first.status, first.body, first.header("connection")) == (200, b"hello, world", None), first
        assert (second.status, second.body, second.header("connection")) == (200, b"hello, world", "close"), second
        assert c.closed_by_peer()


def test_head_has_get_headers_no_body(server):
    with server.connect() as c:
        get = c.request("GET", "/big?n=12345")
        head = c.request("HEAD", "/big?n=12345")
        assert head.status == 200
        assert head.header("content-length") == get.header("content-length") == "12345"
        assert head.body == b""
        # if any body bytes had been sent after the HEAD response, this next response would be garbage
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"hello, world"


def test_head_on_nolength_response(server):
    with server.connect() as c:
        head = c.request("HEAD", "/nolength")
        assert head.status == 200
        assert head.header("content-length") == str(len(b"nolength-body"))
        assert c.request("GET", "/").body == b"hello, world"


def test_head_on_streamed_response_sends_no_body(server):
    with server.connect() as c:
        head = c.request("HEAD", "/stream?n=4")
        assert head.status == 200
        assert c.request("GET", "/").body == b"hello, world"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(server, status):
    with server.connect() as c:
        r = c.request("GET", f"/status/{status}")
        assert r.status == status
        assert r.header("transfer-encoding") is None
        assert r.header("content-length") in (None, "0")
        assert r.header("x-status") == str(status)
        r2 = c.request("GET", "/")
        assert r2.status == 200 and r2.body == b"hello, world"


@pytest.mark.parametrize("status", [200, 201, 202, 301, 400, 403, 418, 451, 500, 503, 599])
def test_other_statuses_pass_through(client, status):
    r = client.get(f"/status/{status}")
    assert r.status_code == status
    assert r.headers["x-status"] == str(status)


def test_single_body_message_gets_content_length(server):
    with server.connect() as c:
        r = c.request("GET", "/nolength")
        assert r.status == 200
        assert r.header("content-length") == "13"
        assert r.header("transfer-encoding") is None
        assert r.body == b"nolength-body"


def test_streamed_response_is_chunked_on_http11(server):
    with server.connect() as c:
        r = c.request("GET", "/stream?n=5")
        assert r.status == 200
        assert r.chunked
        assert r.header("content-length") is None
        assert r.body == b"".join(b"part-%d\n" % i for i in range(5))
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")


def test_streamed_response_on_http10_closes(server):
    with server.connect(timeout=3) as c:
        c.send(b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
        head = c.read_head()
        assert head.status == 200
        # HTTP/1.0 has no chunked coding: with no length known up front, the close is what ends the body
        assert head.header("transfer-encoding") is None and head.header("content-length") is None, head.headers
        assert head.header_all("connection") == ["close"], head.headers
        t0 = time.monotonic()
        body = c.read_to_eof()  # a server that kept the connection open would make this time out (3 s)
        assert body == b"part-0\npart-1\npart-2\n"
        assert time.monotonic() - t0 < 1, "the body must end with the response, not with some later timeout"


def test_streamed_response_httpx(client):
    with client.stream("GET", "/stream?n=20") as r:
        assert r.status_code == 200
        data = b"".join(r.iter_bytes())
    assert data == b"".join(b"part-%d\n" % i for i in range(20))


def test_large_response(client):
    r = client.get("/big?n=5000000")
    assert r.status_code == 200
    assert len(r.content) == 5_000_000
    assert r.content == b"x" * 5_000_000


def test_slow_client_head_byte_by_byte(server):
    req = b"GET /scope/slow?a=1 HTTP/1.1\r\nHost: localhost\r\nX-Slow: yes\r\n\r\n"
    with server.connect() as c:
        for i in range(len(req)):
            c.send(req[i : i + 1])
            time.sleep(0.003)
        r = c.read_response()
        assert r.status == 200
        import json

        scope = json.loads(r.body)
        assert scope["path"] == "/scope/slow"
        assert scope["query_string"] == {"__bytes__": "a=1"}
        assert ["x-slow", "yes"] in [[n["__bytes__"], v["__bytes__"]] for n, v in scope["headers"]]


def test_slow_client_does_not_block_others(server):
    with server.connect() as slow:
        slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # incomplete head, left hanging
        t0 = time.monotonic()
        for _ in range(10):
            with server.connect() as fast:
                r = fast.request("GET", "/")
                assert (r.status, r.body) == (200, b"hello, world")
        assert time.monotonic() - t0 < 2
        slow.send(b"\r\n")
        r = slow.read_response()
        assert (r.status, r.body) == (200, b"hello, world")


def test_absolute_form_target(server):
    import json

    with server.connect() as c:
        r = c.request("GET", f"http://127.0.0.1:{server.port}/scope/abs?x=1")
        assert r.status == 200
        scope = json.loads(r.body)
        assert scope["path"] == "/scope/abs"
        assert scope["query_string"] == {"__bytes__": "x=1"}


def test_options_asterisk(server):
    """OPTIONS * (asterisk-form, RFC 9112 section 3.2.4) is a valid request: the app gets it and answers it (the test
    app has no route for it: its own 404), and the connection stays usable."""
    with server.connect() as c:
        r = c.request("OPTIONS", "*")
        assert (r.status, r.body) == (404, b"not found"), r
        assert r.header("connection") is None, r.headers
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")


def test_server_still_alive(server):
    assert server.alive()
    with httpx.Client(base_url=server.url, timeout=5) as c:
        assert c.get("/").status_code == 200


def test_raw_client_two_connections_interleaved(server):
    a = RawClient(server.addr)
    b = RawClient(server.addr)
    try:
        a.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        r = b.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")
        a.send(b"\r\n")
        r = a.read_response()
        assert (r.status, r.body) == (200, b"hello, world")
    finally:
        a.close()
        b.close()


def test_app_connection_close_header_closes(server):
    with server.connect() as c:
        r = c.request("GET", "/app-close")
        assert (r.status, r.body) == (200, b"closing")
        assert c.closed_by_peer()


def test_app_body_shorter_than_content_length_closes(server):
    """The body fell short of its Content-Length: the connection must be closed (the client cannot resync)."""
    with server.connect(timeout=3) as c:
        c.send(build_request("GET", "/short-body"))
        head = c.read_head()
        assert head.status == 200 and head.header("content-length") == "10"
        t0 = time.monotonic()
        rest = c.read_to_eof()  # times out (3 s) if the server leaves the connection open
        assert rest == b"12345"
        assert time.monotonic() - t0 < 1, "closed only after some timeout, not when the app finished"
    assert server.alive()


def test_app_declared_chunked_is_framed(server):
    with server.connect() as c:
        r = c.request("GET", "/app-chunked")
        assert r.status == 200 and r.chunked
        assert r.header_all("transfer-encoding") == ["chunked"], r.headers
        assert r.body == b"abcdefg"
        assert c.request("GET", "/").body == b"hello, world"


@pytest.mark.parametrize("te, announced", [("gzip", "gzip, chunked"), ("gzip, chunked", "gzip, chunked"),
                                           ("chunked, gzip", "gzip, chunked"), ("GZIP", "GZIP, chunked")])
def test_app_transfer_coding_is_sent_with_chunked_last(server, te, announced):
    """RFC 9112 section 6.1/6.3: the server frames the body, so chunked is the final coding in the header; the app's
    own codings stay, in its order. Keep-alive holds: the next response on the connection is intact."""
    with server.connect() as c:
        c.send(build_request("GET", f"/app-te?te={te.replace(' ', '%20')}") + build_request("GET", "/"))
        r = c.read_response()
        assert r.status == 200 and r.chunked, r.headers
        assert r.header_all("transfer-encoding") == [announced], r.headers
        assert r.header("content-length") is None and r.header("connection") is None, r.headers
        assert gzip.decompress(r.body) == b"hello, coded world " * 50
        assert c.read_response().body == b"hello, world"


def test_app_transfer_coding_to_http10_is_500_and_close(server):
    """HTTP/1.0 has no Transfer-Encoding: the body could only run to the close with its gzip coding unannounced."""
    with server.connect(timeout=3) as c:
        c.send(b"GET /app-te?te=gzip HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 500 and r.header("transfer-encoding") is None, r.headers
        assert c.closed_by_peer()


def test_head_with_an_empty_app_body_sends_no_content_length(server):
    """RFC 9110 section 9.3.2: a HEAD response's Content-Length must be GET's; an app that sent no body for HEAD
    said nothing about it, so none is sent (not 0)."""
    with server.connect() as c:
        head = c.request("HEAD", "/status/200")
        assert head.status == 200 and head.body == b""
        assert head.header("content-length") is None and head.header("transfer-encoding") is None, head.headers
        assert c.request("GET", "/").body == b"hello, world"


def test_app_declared_chunked_http10(server):
    """RFC 9112 section 6.1: a server MUST NOT send Transfer-Encoding to an HTTP/1.0 client, even when the app set
    it: the raw body is sent as it is, ended by closing the connection."""
    with server.connect(timeout=3) as c:
        c.send(b"GET /app-chunked HTTP/1.0\r\n\r\n")
        head = c.read_head()
        assert head.status == 200
        assert head.header("transfer-encoding") is None, head.headers
        assert head.header("content-length") is None and head.header_all("connection") == ["close"], head.headers
        assert c.read_to_eof() == b"abcdefg", "no chunk framing in a body for an HTTP/1.0 client"
