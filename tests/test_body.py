"""Request bodies: Content-Length and chunked, streaming in several events, 100-continue, disconnects."""

import json
import os
import socket
import time
import uuid

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .support import Server, build_request, chunked

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.basic:app"


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--host", "127.0.0.1", "--port", "0") as srv:
        yield srv
        assert srv.alive(), f"server died during the module:\n{srv.output}"


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def results(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        return c.get("/results").json()


def wait_result(server, key, timeout=5.0, pred=lambda v: v is not None):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = results(server).get(key)
        if pred(value):
            return value
        time.sleep(0.05)
    return value


def test_empty_body_get(server):
    with server.connect() as c:
        r = c.request("GET", "/echo")
        assert r.status == 200
        assert r.body == b""
        assert r.header("x-chunks") == "1"
        assert r.header("x-more-flags") == "0"


def test_small_content_length_body(client):
    r = client.post("/echo", content=b"hello body")
    assert r.status_code == 200
    assert r.content == b"hello body"
    assert r.headers["x-more-flags"].endswith("0")


def test_zero_content_length(server):
    with server.connect() as c:
        r = c.request("POST", "/echo", headers=[("Content-Length", "0")])
        assert r.status == 200 and r.body == b""


def test_binary_body_all_bytes(client):
    body = bytes(range(256)) * 64
    assert client.post("/echo", content=body).content == body


def test_large_body_is_streamed_in_several_events(client):
    body = os.urandom(8 * 1024 * 1024)
    r = client.post("/echo", content=body)
    assert r.status_code == 200
    assert r.content == body
    chunks = int(r.headers["x-chunks"])
    assert chunks > 1, "an 8 MiB body must reach the app in several http.request events"
    flags = r.headers["x-more-flags"]
    assert flags == "1" * (chunks - 1) + "0", "more_body is True on every event but the last"


def test_large_body_sent_slowly_is_streamed(server):
    """The app gets the first part before the client has sent the rest (not read whole into memory first)."""
    part = b"a" * 65536
    n = 16
    with server.connect(timeout=10) as c:
        c.send(build_request("POST", "/echo", headers=[("Content-Length", str(len(part) * n))]))
        for _ in range(n):
            c.send(part)
            time.sleep(0.01)
        r = c.read_response()
        assert r.status == 200
        assert r.body == part * n
        assert int(r.header("x-chunks")) > 1


def test_chunked_request_body(server):
    with server.connect() as c:
        c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]))
        c.send(chunked(b"hello", b" ", b"chunked", b" world"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello chunked world"


def test_chunked_request_body_with_extensions_and_trailers(server):
    with server.connect() as c:
        c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]))
        c.send(b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello world")
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")


def test_chunked_request_body_streamed_slowly(server):
    with server.connect() as c:
        c.send(build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")]))
        expected = b""
        for i in range(10):
            piece = b"piece-%d;" % i
            expected += piece
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.02)
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        assert r.body == expected
        assert int(r.header("x-chunks")) >= 2


def test_large_chunked_body_httpx(client):
    body = os.urandom(3 * 1024 * 1024)

    def gen():
        for i in range(0, len(body), 100_000):
            yield body[i : i + 100_000]

    r = client.post("/echo", content=gen())
    assert r.status_code == 200
    assert r.content == body


def test_body_split_byte_by_byte(server):
    body = b"slowly-sent-body"
    with server.connect() as c:
        c.send(build_request("POST", "/echo", headers=[("Content-Length", str(len(body)))]))
        for b in body:
            c.send(bytes([b]))
            time.sleep(0.005)
        r = c.read_response()
        assert r.body == body


def test_body_then_keep_alive(server):
    with server.connect() as c:
        for i in range(10):
            body = os.urandom(1000 * i)
            r = c.request("POST", "/echo", body=body)
            assert r.body == body
            r = c.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], body=chunked(body, b"!"))
            assert r.body == body + b"!"


def test_unread_body_does_not_corrupt_next_request(server):
    """The app answers without reading the body: the body must not be parsed as the next request. The server reads
    and drops it (up to 4 MiB), so the connection stays usable (docs/internals.md, DISCARD_LIMIT)."""
    with server.connect() as c:
        c.send(build_request("POST", "/noread", body=b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"no-read")
        assert r.header("connection") is None, r.headers
        r2 = c.request("GET", "/")
        assert (r2.status, r2.body) == (200, b"hello, world")
        assert c.buf == b"", f"bytes after the response: {c.buf[:100]!r} (the body was served as a request)"


def test_large_unread_body_does_not_corrupt_next_request(server):
    body = (b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n" * 40000)[:1_000_000]
    with server.connect(timeout=10) as c:
        c.send(build_request("POST", "/noread", headers=[("Content-Length", str(len(body)))]))
        c.send(body)  # 1 MB: under the 4 MiB the server reads and drops to keep the connection
        r = c.read_response()
        assert (r.status, r.body) == (200, b"no-read")
        assert r.header("connection") is None, r.headers
        r2 = c.request("GET", "/")
        assert (r2.status, r2.body) == (200, b"hello, world")
        assert c.buf == b"", f"bytes after the response: {c.buf[:100]!r} (the body was served as a request)"


@pytest.mark.parametrize("mode", ["hybrid", "async"])
def test_unread_body_trickled_after_the_response_is_bounded_in_time(mode):
    """The app answers without reading a 100 MB body; the client sends one byte a second, each within
    --timeout-keep-alive of the last. The server drops them, but only for --timeout-request-body after the first
    (then it closes; the sweep runs once a second), and the response it sent arrived whole."""
    keep_alive, body_timeout = 2, 3
    with Server(APP, "--port", "0", "--no-access-log", "--mode", mode, "--timeout-keep-alive", str(keep_alive),
                "--timeout-request-body", str(body_timeout), "--timeout-request-head", "3") as srv:
        with srv.connect(timeout=5) as c:
            c.send(build_request("POST", "/noread", headers=[("Content-Length", "100000000")]))
            r = c.read_response()
            assert (r.status, r.body) == (200, b"no-read"), r
            answered = time.monotonic()
            closed_after = None
            while closed_after is None and time.monotonic() - answered < 15:
                try:
                    c.sock.sendall(b"x")
                except OSError:  # (reset by the peer: it closed)
                    closed_after = time.monotonic() - answered
                    break
                if c.closed_by_peer(timeout=1.0):
                    closed_after = time.monotonic() - answered
            assert closed_after is not None, "a trickled unread body held the connection for 15 s"
            # first dropped byte at once (or within the first second), then the bound, then at most the sweep
            assert closed_after < body_timeout + 1 + 1 + 1.5, closed_after
            assert c.buf == b"", c.buf


# ---------------------------------------------------------------------------------------------------------
# Expect: 100-continue
# ---------------------------------------------------------------------------------------------------------
def test_100_continue_sent_when_app_reads(server):
    body = b"body after continue"
    with server.connect() as c:
        c.send(build_request("POST", "/echo", headers=[("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        interim = c.read_head()
        assert interim.status == 100, interim
        assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n")
        c.send(body)
        r = c.read_response()
        assert (r.status, r.body) == (200, body)
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")


def test_100_continue_not_sent_when_app_does_not_read(server):
    with server.connect() as c:
        c.send(build_request("POST", "/noread", headers=[("Expect", "100-continue"), ("Content-Length", "1000")]))
        r = c.read_head()
        assert r.status == 200, "no 100 Continue when the app answers without reading the body"
        assert int(r.header("content-length")) == len(b"no-read")
        assert c.read_exact(len(b"no-read")) == b"no-read"


def test_100_continue_with_chunked_body(server):
    with server.connect() as c:
        c.send(build_request("POST", "/echo", headers=[("Expect", "100-continue"), ("Transfer-Encoding", "chunked")]))
        assert c.read_head().status == 100
        c.send(chunked(b"abc", b"def"))
        r = c.read_response()
        assert r.body == b"abcdef"


def test_100_continue_body_sent_early_no_duplicate(server):
    """A client that does not wait for 100 sends the body right away; at most one 100 then the response."""
    body = b"eager body"
    with server.connect() as c:
        c.send(build_request("POST", "/echo", headers=[("Expect", "100-continue")], body=body))
        r = c.read_response()
        if r.status == 100:
            r = c.read_response()
            assert r.status != 100, "a second 100 Continue"
        assert (r.status, r.body) == (200, body)
        r2 = c.request("GET", "/")
        assert (r2.status, r2.body) == (200, b"hello, world"), "a stray 100 Continue or body byte came after"


def test_100_continue_httpx(client):
    r = client.post("/echo", content=b"x" * 10000, headers={"Expect": "100-continue"})
    assert r.status_code == 200 and r.content == b"x" * 10000


def test_http10_expect_ignored(server):
    with server.connect() as c:
        c.send(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
        r = c.read_response()
        assert r.status == 200 and r.body == b"abc"


# ---------------------------------------------------------------------------------------------------------
# http.disconnect
# ---------------------------------------------------------------------------------------------------------
def test_receive_after_response_returns_disconnect(server):
    rid = "after-" + uuid.uuid4().hex
    with server.connect() as c:
        r = c.request("POST", f"/after-response?id={rid}", body=b"abc")
        assert r.status == 200 and r.body == b"done"
        # the connection stays usable
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"hello, world")
    assert wait_result(server, rid) == "http.disconnect"


def test_receive_after_response_disconnect_when_client_gone(server):
    rid = "after-gone-" + uuid.uuid4().hex
    with server.connect() as c:
        r = c.request("GET", f"/after-response?id={rid}", headers=[("Connection", "close")])
        assert r.status == 200
    assert wait_result(server, rid) == "http.disconnect"


def test_client_disconnects_mid_body(server):
    rid = "mid-" + uuid.uuid4().hex
    with server.connect() as c:
        c.send(build_request("POST", f"/track-disconnect?id={rid}", headers=[("Content-Length", "1000000")]))
        c.send(b"x" * 5000)
        time.sleep(0.2)
    seen = wait_result(server, rid, pred=lambda v: v and v[-1] == "http.disconnect")
    assert seen and seen[-1] == "http.disconnect", seen
    assert "http.request" in seen
    # the server keeps serving
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for _ in range(3):
            assert c.get("/").status_code == 200


def test_client_disconnects_mid_chunked_body(server):
    rid = "midc-" + uuid.uuid4().hex
    with server.connect() as c:
        c.send(build_request("POST", f"/track-disconnect?id={rid}", headers=[("Transfer-Encoding", "chunked")]))
        c.send(b"5\r\nhello\r\n")
        time.sleep(0.2)
    seen = wait_result(server, rid, pred=lambda v: v and v[-1] == "http.disconnect")
    assert seen and seen[-1] == "http.disconnect", seen
    assert server.alive()


def test_many_clients_disconnect_mid_body(server):
    socks = []
    for _ in range(20):
        s = socket.create_connection(server.addr, timeout=5)
        s.sendall(build_request("POST", "/echo", headers=[("Content-Length", "100000")]) + b"y" * 1000)
        socks.append(s)
    time.sleep(0.1)
    for s in socks:
        s.close()
    with httpx.Client(base_url=server.url, timeout=5) as c:
        r = c.post("/echo", content=b"after the storm")
        assert r.content == b"after the storm"
    assert server.alive()


def test_request_completed_body_then_disconnect_tracking(server):
    rid = "complete-" + uuid.uuid4().hex
    with server.connect() as c:
        r = c.request("POST", f"/track-disconnect?id={rid}", body=b"all of it")
        assert (r.status, r.body) == (200, b"complete")
    seen = results(server)[rid]
    assert seen == ["http.request"]


def test_scope_json_with_body(client):
    r = client.post("/scope", content=b"ignored")
    assert json.loads(r.content)["method"] == "POST"


@settings(max_examples=60)
@given(
    st.lists(st.tuples(st.binary(max_size=2000), st.sampled_from(["length", "chunked"])), min_size=1, max_size=6),
    st.data(),
)
def test_property_pipelined_bodies_any_split(server, reqs, data):
    """Pipelined POSTs with Content-Length or chunked bodies, sent in arbitrary pieces: each echoed in order."""
    stream = b""
    for i, (body, framing) in enumerate(reqs):
        if framing == "length":
            stream += build_request("POST", f"/echo?i={i}", body=body, headers=[("Content-Length", str(len(body)))])
        else:
            cut = data.draw(st.integers(0, len(body)))
            stream += build_request("POST", f"/echo?i={i}", headers=[("Transfer-Encoding", "chunked")])
            stream += chunked(body[:cut], body[cut:])
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=6))))
    with server.connect() as c:
        prev = 0
        for cut in cuts + [len(stream)]:
            c.send(stream[prev:cut])
            prev = cut
            time.sleep(0.001)
        for body, _ in reqs:
            r = c.read_response()
            assert (r.status, r.body) == (200, body)
