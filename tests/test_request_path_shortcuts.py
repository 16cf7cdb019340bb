"""The per-request shortcuts of the compiled path give what the long way gives (docs/performance.md, issue 22).

- The HTTP version is read from the end of a request line that starts the buffer fed to H1Protocol, else asked
  of the parser: every way a head can arrive (split anywhere, pipelined behind another, after empty lines, HTTP/1.2)
  must give the parser's version.
- ``send_response(status, headers, n, body)`` frames head and a Content-Length body in one allocation: the same
  bytes and the same protocol state as ``send_response(status, headers, n) + send_body(body, False)``.
- A request's task is the loop's current task during its first step and is not after it, also when it raised.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .support import RawClient, Server, build_request

h1 = pytest.importorskip("hybrid._speedups.h1", reason="compiled extension hybrid._speedups.h1 not built")

pytestmark = pytest.mark.timeout(60)

VERSIONS = {"1.0": "1.0", "1.1": "1.1", "1.2": "1.1"}  # (1.2 and later 1.x are served as 1.1)


def _head(version: str, path: str = "/") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: x\r\n\r\n".encode()


def _versions(data: bytes, cuts: list[int]) -> list[str]:
    proto = h1._create_h1_protocol()
    events = []
    prev = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        events.extend(proto.feed(data[prev:cut]))
        prev = cut
    return [e.http_version for e in events if isinstance(e, h1.Request)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(VERSIONS)), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0, max_value=120), max_size=3),
    st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]),
)
def test_version_as_the_parser_reads_it(versions, cuts, leading):
    data = leading + b"".join(_head(v, f"/{i}") for i, v in enumerate(versions))
    cuts = [c for c in cuts if c < len(data)]
    # (an HTTP/1.0 request without keep-alive closes the connection: what follows it is ignored)
    answered = versions[: versions.index("1.0") + 1] if "1.0" in versions else versions
    assert _versions(data, cuts) == [VERSIONS[v] for v in answered]


def test_a_pipelined_head_is_not_read_from_the_first_line():
    # The second head does not start the buffer: its version is not the first line's.
    assert _versions(_head("1.1") + _head("1.0"), []) == ["1.1", "1.0"]
    keep = b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    assert _versions(keep + _head("1.1"), []) == ["1.0", "1.1"]


def _status(data: bytes, cuts: list[int]):
    proto = h1._create_h1_protocol()
    prev = 0
    try:
        for cut in sorted(set(cuts)) + [len(data)]:
            proto.feed(data[prev:cut])
            prev = cut
    except h1.H1Error as err:
        return err.status_code
    return None


@pytest.mark.parametrize("line", [b"CONNECT HTTP/1.1", b"GET HTTP/1.1", b"GET  HTTP/1.0"])
def test_a_line_without_a_target_is_not_read_as_a_version(line):
    # " HTTP/1.1" there is the target, not the version: the first line's shortcut must answer what the parser
    # answers when the head comes in pieces (the fuzzer found 400 whole against 505 cut).
    data = line + b"\r\nHost: x\r\n\r\n"
    assert _status(data, []) == _status(data, [3]) == _status(data, list(range(1, len(data))))


def test_a_head_continued_from_an_earlier_read():
    # The request line came in an earlier buffer: this one's first line is a header field, not the version.
    head = b"GET / HTTP/1.0\r\nHost: x\r\nX-A: HTTP/1.1\r\n\r\n"
    assert _versions(head, [head.index(b"X-A")]) == ["1.0"]


# -- one allocation for the head and a Content-Length body ------------------------------------------------


def _pair(method: bytes, version: str):
    protos = []
    for _ in range(2):
        p = h1._create_h1_protocol(date_header=False)
        (req,) = [e for e in p.feed(f"{method.decode()} / HTTP/{version}\r\nHost: x\r\n\r\n".encode())
                  if isinstance(e, h1.Request)]
        protos.append(p)
    return protos


def _outcome(call):
    try:
        return ("ok", call())
    except h1.LocalProtocolError as exc:
        return ("error", str(exc))


HEADERS = st.lists(
    st.sampled_from([
        (b"content-type", b"text/plain"),
        (b"Content-Length", b"5"),
        (b"content-length", b"0"),
        (b"transfer-encoding", b"gzip"),
        (b"Connection", b"close"),
        (b"server", b"app"),
        (b"x-a", b"b"),
    ]),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"GET", b"HEAD"]),
    st.sampled_from(["1.0", "1.1"]),
    st.sampled_from([200, 204, 304, 404, 599, 799]),
    HEADERS,
    st.binary(max_size=8),
    st.booleans(),
)
def test_head_and_body_in_one_allocation(method, version, status, headers, body, as_iterator):
    one, two = _pair(method, version)
    given_headers = iter(headers) if as_iterator else headers
    joined = _outcome(lambda: one.send_response(status, given_headers, len(body), body))
    apart = _outcome(lambda: two.send_response(status, headers, len(body)) + two.send_body(body, False))
    assert joined == apart
    assert (one.keep_alive, one.mid_response) == (two.keep_alive, two.mid_response)
    if joined[0] == "ok":  # the response is complete: a second one has no request to answer
        with pytest.raises(h1.LocalProtocolError):
            one.send_response(200, [], 0, b"")


# -- the request's task, over a real server ------------------------------------------------------------------

APP = "tests.apps.basic:app"


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--host", "127.0.0.1", "--port", "0", "--timeout-keep-alive", "30") as srv:
        yield srv
        assert srv.alive(), f"server died during the module:\n{srv.output}"


def test_versions_over_a_socket(server):
    # Pipelined in one write: HTTP/1.1 first, then an HTTP/1.0 request (answered, then the connection closes).
    with RawClient(server.addr) as c:
        c.send(build_request("GET", "/scope", version="HTTP/1.1") + build_request("GET", "/scope", version="HTTP/1.0"))
        first, second = c.read_response(), c.read_response()
    assert (first.http_version, json.loads(first.body)["http_version"]) == ("HTTP/1.1", "1.1")
    assert second.status == 200, second.body  # (taken for HTTP/1.1, it would be a 400: no Host field)
    assert json.loads(second.body)["http_version"] == "1.0"
    assert second.header("connection") != "keep-alive"


def test_current_task_during_the_first_step_only(server):
    # /current-task answers in its first step, /error-before raises in it (tests/apps/basic.py). A current task
    # left set after either would make the next request's step fail to enter (asyncio: "Cannot enter into task").
    for path in ("/current-task", "/error-before", "/current-task", "/error-before", "/current-task"):
        with RawClient(server.addr) as c:
            c.send(build_request("GET", path))
            resp = c.read_response()
        if path == "/error-before":
            assert resp.status == 500
        else:
            assert resp.status == 200, resp.body
            assert json.loads(resp.body) == {"task": "RequestTask", "done": False}
