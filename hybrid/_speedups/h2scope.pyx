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

from hybrid.request_id import REQUEST_ID_KEY, LazyRequestId, _UNSET

ASGI = {"version": "3.0", "spec_version": "2.4"}

# The names a trusted proxy sets (hybrid/proxy_headers.py ProxyTrust.apply): without any of them apply() changes
# nothing, so it is called only when one is there.
cdef frozenset PROXY_NAMES = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"))


cdef inline str _latin1(const char *p, Py_ssize_t n):
    return PyUnicode_DecodeLatin1(p, n, NULL)


def build_scope(session, bytes method, bytes path, list fields):
    """The scope of a request whose header block ``request_fields`` checked and split (``fields``: the regular
    ones, cookies joined, :authority as Host)."""
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
    server = session.server
    cdef str root = server.root_path
    ids = LazyRequestId(_UNSET)
    ids._ids = server.request_ids
    ids._headers = fields
    scope = {
        "type": "http",
        "asgi": ASGI,
        "http_version": "2",
        "server": session.server_addr,
        "client": session.client_addr,
        "scheme": session.scheme,
        "method": _latin1(PyBytes_AS_STRING(method), PyBytes_GET_SIZE(method)),
        "root_path": root,
        "path": root + text if root else text,
        "raw_path": root.encode() + raw_path if root else raw_path,
        "query_string": query,
        "headers": fields,
        "state": None,  # (set where the app runs: the pool's copy in _start, a worker's in onworker.run_stream)
        "extensions": {"http.response.trailers": {}, REQUEST_ID_KEY: ids},
    }
    proxy = session.proxy
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
