# cython: language_level=3
"""The ASGI ``http`` scope of an HTTP/2 request, built in one compiled call (issue 26).

Why: the session builds one per stream on the pool's loop, from the fields ``h2fields.request_fields`` checked
and split; in Python that was a dozen calls a request (decode, partition, the request id's lazy dict, the trusted
proxy's header scan). The same dict comes out (tests/test_h2scope.py compares it with the Python it replaced,
over drawn paths, queries, root paths and fields). CONNECT never comes here (hybrid/h2/connect.py). The stream
object that carries the scope is made here too (``new_stream``: hybrid/h2/stream.py's H2Stream, its slots stored
in place).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr

from collections import deque
from time import perf_counter
from urllib.parse import unquote

from hybrid._speedups.cycle cimport _lazy_id

from hybrid.request_id import REQUEST_ID_KEY

ASGI = {"version": "3.0", "spec_version": "2.4"}
cdef tuple _NO_ARGS = ()

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


# -- the stream that carries the scope ---------------------------------------------------------------------------

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member

# hybrid/h2/stream.py's H2Stream.__init__, slot by slot: what each slot starts as (a constant), or None for the
# ones that depend on the arguments (set in new_stream). A slot added there and not here stops the import.
cdef dict _STARTS = {"session": None, "id": None, "scope": None, "head": None, "body": None, "body_bytes": 0,
                     "ended": False, "delivered_end": False, "gone": False, "waiter": None, "window_waiter": None,
                     "status": None, "headers": (), "trailers": False, "sent_headers": False, "complete": False,
                     "task": None, "remote": False, "inbox": None, "app_loop": None, "app_task": None, "ops": None,
                     "writer": None, "chunks": 0, "first_step": False, "last_body": None, "sent": 0, "started": None}
cdef type _STREAM = None
cdef Py_ssize_t _N
cdef Py_ssize_t _OFFSETS[32]
cdef list _VALUES = []  # the slots' starting values, in _OFFSETS' order
cdef Py_ssize_t _SESSION, _ID, _SCOPE, _HEAD, _BODY, _APP_LOOP, _STARTED


cdef int _learn(type cls) except -1:
    """The slots' offsets in an H2Stream (member descriptors), read once."""
    global _STREAM, _N, _SESSION, _ID, _SCOPE, _HEAD, _BODY, _APP_LOOP, _STARTED
    names = cls.__slots__
    if set(names) != set(_STARTS) or len(names) > 32 or cls.__basicsize__ != object.__basicsize__ + 8 * len(names):
        raise TypeError(f"{cls.__name__}'s slots are not the ones new_stream knows")
    for i, name in enumerate(names):
        _OFFSETS[i] = (<PyMemberDescrObject*><PyObject*>cls.__dict__[name]).d_member.offset
        _VALUES.append(_STARTS[name])
    _N = len(names)
    where = {name: _OFFSETS[i] for i, name in enumerate(names)}
    _SESSION, _ID, _SCOPE, _HEAD = where["session"], where["id"], where["scope"], where["head"]
    _BODY, _APP_LOOP, _STARTED = where["body"], where["app_loop"], where["started"]
    _STREAM = cls
    return 0


cdef inline void _put(obj, Py_ssize_t offset, value) noexcept:
    cdef PyObject **field = <PyObject**>((<char*><PyObject*>obj) + offset)
    cdef PyObject *old = field[0]
    Py_INCREF(value)
    field[0] = <PyObject*>value
    Py_XDECREF(old)


def new_stream(type cls, session, stream_id, dict scope):
    """``cls(session, stream_id, scope)`` for hybrid/h2/stream.py's H2Stream: the same slots with the values its
    ``__init__`` gives them, stored in place (the class call and its Python ``__init__`` were ~3,700
    instructions a request; tests/test_h2scope.py compares the two)."""
    cdef Py_ssize_t i
    if cls is not _STREAM:
        if _STREAM is not None:
            return cls(session, stream_id, scope)
        _learn(cls)
    stream = (<PyTypeObject*>cls).tp_new(cls, <PyObject*>_NO_ARGS, NULL)  # (object's: every slot NULL)
    for i in range(_N):
        _put(stream, _OFFSETS[i], <object>PyList_GET_ITEM(_VALUES, i))
    _put(stream, _SESSION, session)
    _put(stream, _ID, stream_id)
    _put(stream, _SCOPE, scope)
    _put(stream, _HEAD, scope["method"] == "HEAD")
    _put(stream, _BODY, deque())
    _put(stream, _APP_LOOP, session.loop)
    _put(stream, _STARTED, perf_counter())
    return stream
