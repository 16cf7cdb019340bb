# cython: language_level=3
"""The ASGI ``http`` scope of an HTTP/2 request, built in one compiled call (issue 26).

Why: the session builds one per stream on the pool's loop, from the fields ``h2fields.request_fields`` checked
and split; in Python that was a dozen calls a request (decode, partition, the request id's lazy dict, the trusted
proxy's header scan). The same dict comes out (tests/test_h2scope.py compares it with the Python it replaced,
over drawn paths, queries, root paths and fields). CONNECT never comes here (hybrid/h2/connect.py).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr

from urllib.parse import unquote

from hybrid._speedups.cycle cimport _lazy_id

from hybrid.request_id import REQUEST_ID_KEY

ASGI = {"version": "3.0", "spec_version": "2.4"}

# The names a trusted proxy sets (hybrid/proxy_headers.py ProxyTrust.apply): without any of them apply() changes
# nothing, so it is called only when one is there.
cdef frozenset PROXY_NAMES = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"))


cdef inline str _latin1(const char *p, Py_ssize_t n):
    return PyUnicode_DecodeLatin1(p, n, NULL)


cdef tuple _base(session):
    """What every scope of a connection shares, read once (``session.scope_base``): a dict with every key in
    the scope's order, copied per request (a dict copy clones the key table: no insertions, no resizes), and
    the server's and connection's parts the rest needs."""
    server = session.server
    cdef str root = server.root_path
    base = {"type": "http", "asgi": ASGI, "http_version": "2", "server": session.server_addr,
            "client": session.client_addr, "scheme": session.scheme, "method": None, "root_path": root,
            "path": None, "raw_path": None, "query_string": None, "headers": None,
            "state": None,  # (set where the app runs: the pool's copy in _start, a worker's in onworker.run_stream)
            "extensions": None}
    return base, root, root.encode() if root else None, server.request_ids, session.proxy


def build_scope(session, bytes method, bytes path, list fields):
    """The scope of a request whose header block ``request_fields`` checked and split (``fields``: the regular
    ones, cookies joined, :authority as Host)."""
    cached = session.scope_base
    if cached is None:
        cached = session.scope_base = _base(session)
    cdef dict base
    cdef str root
    base, root, root_raw, request_ids, proxy = <tuple>cached
    cdef const char *p = PyBytes_AS_STRING(path)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path)
    cdef const char *q = <const char *>memchr(p, 0x3f, n)  # "?"
    cdef Py_ssize_t cut = q - p if q != NULL else n
    cdef bytes raw_path, query
    if q == NULL:
        raw_path, query = path, b""
    else:
        raw_path, query = p[:cut], p[cut + 1:n]
    cdef str text = _latin1(p, cut)
    if memchr(p, 0x25, cut) != NULL:  # "%"
        text = unquote(text, encoding="utf-8", errors="surrogateescape")
    ids = _lazy_id(request_ids, fields)  # (cycle.pyx's: no Python-level class call, its slots stored directly)
    scope = base.copy()
    scope["method"] = _latin1(PyBytes_AS_STRING(method), PyBytes_GET_SIZE(method))
    scope["path"] = root + text if root else text
    scope["raw_path"] = root_raw + raw_path if root else raw_path
    scope["query_string"] = query
    scope["headers"] = fields
    scope["extensions"] = {"http.response.trailers": {}, REQUEST_ID_KEY: ids}
    if proxy is not None:  # a trusted proxy's X-Forwarded-* / Forwarded (--forwarded-allow-ips)
        for name, _ in fields:
            if name in PROXY_NAMES:
                proxy.apply(scope)
                break
    return scope


def wants_event_stream(list fields):
    """An Accept field that names text/event-stream (such a stream's app runs on the pool's loop)."""
    for name, value in fields:
        if name == b"accept" and b"text/event-stream" in value:
            return True
    return False
