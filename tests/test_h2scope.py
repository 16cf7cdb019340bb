"""hybrid/_speedups/h2scope.pyx against the Python it replaced (issue 26): ``build_scope`` must make the same ASGI
scope as ``reference`` below (hybrid/h2/stream.py's ``build_scope`` until it was compiled, kept here verbatim),
and ``wants_event_stream`` the same answer as crossing.py's scan did. Drawn: methods, paths with queries, percent
escapes (valid and invalid UTF-8) and any latin-1 byte, --root-path, fields with and without the headers a proxy
sets, proxy trust off, X-Forwarded-* or Forwarded, with X-Forwarded-Host. Derandomized Hypothesis
(tests/conftest.py).
"""

from __future__ import annotations

import types
from urllib.parse import unquote

from hybrid._speedups.h2scope import build_scope, wants_event_stream
from hypothesis import given
from hypothesis import strategies as st

from hybrid.proxy_headers import ProxyTrust
from hybrid.request_id import REQUEST_ID_KEY, RequestIds, lazy_request_id

ASGI = {"version": "3.0", "spec_version": "2.4"}


def reference(session, method: bytes, path: bytes, fields: list) -> dict:
    """The ASGI ``http`` scope of a request whose header block ``request_fields`` checked and split (fields: the
    regular ones, cookies joined, :authority as Host); CONNECT never comes here (connect.py)."""
    method = method.decode("latin-1")
    raw_path, _, query = path.partition(b"?")
    text = raw_path.decode("latin-1")
    if "%" in text:
        text = unquote(text, encoding="utf-8", errors="surrogateescape")
    server = session.server
    root = server.root_path
    scope = {
        "type": "http",
        "asgi": ASGI,
        "http_version": "2",
        "server": session.server_addr,
        "client": session.client_addr,
        "scheme": session.scheme,
        "method": method,
        "root_path": root,
        "path": root + text if root else text,
        "raw_path": root.encode() + raw_path if root else raw_path,
        "query_string": query,
        "headers": fields,
        "state": None,
        "extensions": {"http.response.trailers": {}, REQUEST_ID_KEY: lazy_request_id(server.request_ids, fields)},
    }
    if session.proxy is not None:
        session.proxy.apply(scope)
    return scope


PATH_BYTES = st.sampled_from([b"/", b"a", b"?", b"%", b"%2F", b"%41", b"%e2%82%ac", b"%ff", b"%zz", b"%", b"&",
                              b"=", b" ", b"\xe9", b"\x80", b"//", b"x?y"])
FIELD_NAMES = st.sampled_from([b"host", b"accept", b"user-agent", b"cookie", b"x-forwarded-for", b"x-forwarded-proto",
                               b"x-forwarded-host", b"forwarded", b"x-request-id"])
FIELD_VALUES = st.sampled_from([b"", b"t", b"*/*", b"text/event-stream", b"text/html, text/event-stream;q=0.9",
                                b"TEXT/EVENT-STREAM", b"10.0.0.1", b"10.0.0.1, 127.0.0.1", b"https", b"example.com",
                                b"for=10.0.0.2;proto=https;host=h.example", b"abc-123"])
PROXIES = st.sampled_from([None, (False, False), (True, False), (False, True), (True, True)])


def session_of(root: str, proxy, request_ids) -> types.SimpleNamespace:
    server = types.SimpleNamespace(root_path=root, request_ids=request_ids)
    trust = None if proxy is None else ProxyTrust(["127.0.0.1"], forwarded=proxy[0], forwarded_host=proxy[1])
    return types.SimpleNamespace(server=server, server_addr=("127.0.0.1", 8000), client_addr=("127.0.0.1", 5555),
                                 scheme="http", proxy=trust, scope_base=None)


@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"M\xe9"]),
    path=st.lists(PATH_BYTES, max_size=8).map(b"".join),
    root=st.sampled_from(["", "/api", "/r\xe9"]),
    fields=st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=6),
    proxy=PROXIES,
    with_ids=st.booleans(),
)
def test_build_scope_is_the_python_one(method, path, root, fields, proxy, with_ids):
    request_ids = RequestIds() if with_ids else None
    session = session_of(root, proxy, request_ids)
    if with_ids:  # (then the scope below is built from the connection's parts made by this one, kept on it)
        build_scope(session, b"GET", b"/", [])
    got = build_scope(session, method, path, list(fields))
    want = reference(session, method, path, list(fields))
    got_id = got["extensions"].pop(REQUEST_ID_KEY)
    want_id = want["extensions"].pop(REQUEST_ID_KEY)
    # (the lazy id unread: filled, each would take the next number of request_ids)
    assert type(got_id) is type(want_id)
    assert got_id._ids is request_ids and got_id._headers == want_id._headers
    assert dict.items(got_id) == {"id": None}.items()
    assert got == want
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    assert list(got) == list(want)


@given(fields=st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=6))
def test_wants_event_stream_is_the_python_scan(fields):
    want = any(name == b"accept" and b"text/event-stream" in value for name, value in fields)
    assert wants_event_stream(list(fields)) is want


@given(method=st.sampled_from(["GET", "HEAD", "POST", "head"]), sid=st.integers(1, 2**31 - 1))
def test_new_stream_is_the_streams_own_init(method, sid):
    """``new_stream`` stores H2Stream's slots in place: every slot as ``H2Stream.__init__`` sets it (``body`` a
    new, empty deque of its own; ``started`` the perf_counter of its making)."""
    from collections import deque
    from time import perf_counter

    from hybrid._speedups.h2scope import new_stream

    from hybrid.h2.stream import H2Stream

    session = types.SimpleNamespace(loop=object())
    scope = {"method": method}
    before = perf_counter()
    made = new_stream(H2Stream, session, sid, scope)
    after = perf_counter()
    want = H2Stream(session, sid, scope)
    assert type(made) is H2Stream
    for name in H2Stream.__slots__:
        got, expected = getattr(made, name), getattr(want, name)
        if name == "started":
            assert before <= got <= after
        elif name == "body":
            assert type(got) is deque and not got and got is not expected and got is not new_stream(
                H2Stream, session, sid, scope).body
        else:
            assert got == expected and type(got) is type(expected), name
            if name in ("session", "scope", "app_loop"):
                assert got is expected
