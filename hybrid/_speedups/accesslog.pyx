# cython: language_level=3
"""The access line of a completed HTTP request, made in C: ``log_access`` is called by Connection (connection.pyx)
for every request while the access log is on.

hybrid/logs.py owns the access log: its formats, the rule for when a line may skip the logging module (``_FastPath``:
the handlers setup_logging installed are still the only ones, no filter, nothing disabled), the buffer of lines
(``_Pending``) and the path through the logging module. This module repeats the fast path's line, byte for byte,
without its Python-level work: the fields are copied from the scope into one buffer (the path's bytes as they
are, since the line decodes them as latin-1; the JSON strings escaped as json's ensure_ascii escaper does) and
become one str, which is appended to the buffer's list. The rule is checked on every request, as logs.py checks
it, but from the loggers' and the handler's own ``__dict__``: a handler, filter or dictConfig takes effect at the
next request, as before. Anything this code does not handle (another logging setup, a scope value of an
unexpected type, text past U+00FF in the method, client or request id) goes to ``logs.log_http_access``, which
decides exactly as before.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItemWithError, PyDict_SetItem
from cpython.long cimport PyLong_AsUnsignedLongLong
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.list cimport PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from libc.string cimport memcmp, memcpy, strlen

from hybrid._speedups.cycle cimport RequestCycle

from logging import Logger

from hybrid.request_id import REQUEST_ID_KEY, LazyRequestId, RequestIds


cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_1BYTE_KIND
    object PyUnicode_DecodeLatin1(const char* s, Py_ssize_t n, const char* errors)
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* type) except NULL
    int PyList_Append(object, object) except -1

cdef extern from *:
    """
    /* PEP 509's version tag: a new value each time the dict changes. CPython 3.11 has it (3.12 deprecates it);
       elsewhere 0, and every check reads the dicts. */
    #if PY_VERSION_HEX < 0x030C0000
    #define hybrid_dict_version(d) (((PyDictObject *)(d))->ma_version_tag)
    #else
    #define hybrid_dict_version(d) ((unsigned long long)0)
    #endif
    """
    unsigned long long _dict_version "hybrid_dict_version" (dict d)


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    struct tm:
        pass
    int CLOCK_REALTIME
    int CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec* ts)
    tm* gmtime_r(const time_t* t, tm* out)
    size_t strftime(char* s, size_t n, const char* fmt, const tm* t)

DEF STACK_LINE = 2048  # a line up to this long is made on the stack (nearly all); a longer one in the heap

cdef const char* _HEX = b"0123456789abcdef"


cdef class _State:
    """What setup_logging set up (logs._FastPath), as this module reads it on every request."""
    cdef object fast, pending, handler
    cdef dict pending_dict
    cdef list lines  # pending.lines: the same list for the life of the process (_Pending._reset clears it)
    cdef Py_ssize_t limit
    cdef dict access_dict, parent_dict, handler_dict  # the two loggers' and the handler's attributes
    cdef list access_handlers, parent_handlers  # as setup_logging left them
    # The lists in the dicts at the last check, and the dicts' versions then (0: look again)
    cdef list access_handlers_now, parent_handlers_now, access_filters_now, parent_filters_now, handler_filters_now
    cdef unsigned long long access_version, parent_version, handler_version
    cdef object propagate
    cdef bint json
    cdef bytes prefix
    cdef dict clients  # scope["client"] -> its text as latin-1 bytes (JSON: escaped and quoted), or None
    cdef time_t second  # the JSON time's second, and '{"time":"YYYY-MM-DDTHH:MM:SS.' for it
    cdef char stamp[40]
    cdef Py_ssize_t stamp_len


cdef _State _state = None
cdef object _fallback = None  # logs.log_http_access


def configure(fast, pending, access_logger, parent_logger, fallback):
    """Called by logs.setup_logging whenever its fast path changes: ``fast`` is the new logs._FastPath (None: every
    line goes to ``fallback``, logs.log_http_access)."""
    global _state, _fallback
    _fallback = fallback
    if fast is None or type(access_logger) is not Logger or type(parent_logger) is not Logger:
        _state = None  # (a logger class set by logging.setLoggerClass may compute its attributes: not read here)
        return
    cdef _State s = _State()
    s.fast = fast
    s.pending = pending
    s.handler = fast.handler
    s.lines = pending.lines
    s.pending_dict = pending.__dict__
    s.limit = pending.limit
    s.access_dict = access_logger.__dict__
    s.parent_dict = parent_logger.__dict__
    s.handler_dict = fast.handler.__dict__
    s.access_handlers = list(fast.access_handlers)
    s.parent_handlers = list(fast.parent_handlers)
    s.propagate = fast.propagate
    s.json = fast.json
    s.prefix = fast.prefix.encode("latin-1")
    s.clients = {}
    s.access_version = 0
    s.second = -1
    s.stamp_len = 0
    _state = s


cdef inline bint _same_items(list current, list saved) noexcept:
    cdef Py_ssize_t i, n = PyList_GET_SIZE(saved)
    if PyList_GET_SIZE(current) != n:
        return False
    for i in range(n):
        if <PyObject*>current[i] is not <PyObject*>saved[i]:
            return False
    return True


cdef inline object _list(dict attributes, str name):
    """attributes[name] if it is a list, else None."""
    cdef PyObject* value = PyDict_GetItemWithError(attributes, name)
    if value is NULL or type(<object>value) is not list:
        return None
    return <object>value


cdef bint _only_defaults(_State s) except -1:
    """logs.log_http_access's condition, read from the objects' own dicts: True only where that condition is true
    (False sends the request to log_http_access, which checks the condition itself). While none of the three dicts
    changed since the last check (their version tags, CPython 3.11), the lists found then are the ones to look in."""
    if (_dict_version(s.access_dict) == s.access_version and _dict_version(s.parent_dict) == s.parent_version
            and _dict_version(s.handler_dict) == s.handler_version and s.access_version != 0):
        return (_same_items(s.access_handlers_now, s.access_handlers)
                and _same_items(s.parent_handlers_now, s.parent_handlers)
                and PyList_GET_SIZE(s.access_filters_now) == 0 and PyList_GET_SIZE(s.parent_filters_now) == 0
                and PyList_GET_SIZE(s.handler_filters_now) == 0)
    access_handlers = _list(s.access_dict, "handlers")
    parent_handlers = _list(s.parent_dict, "handlers")
    access_filters = _list(s.access_dict, "filters")
    parent_filters = _list(s.parent_dict, "filters")
    handler_filters = _list(s.handler_dict, "filters")
    cdef PyObject* propagate = PyDict_GetItemWithError(s.access_dict, "propagate")
    cdef PyObject* access_disabled = PyDict_GetItemWithError(s.access_dict, "disabled")
    cdef PyObject* parent_disabled = PyDict_GetItemWithError(s.parent_dict, "disabled")
    if (access_handlers is None or parent_handlers is None or access_filters is None or parent_filters is None
            or handler_filters is None or propagate is NULL or <object>propagate is not s.propagate
            or access_disabled is NULL or <object>access_disabled is not False
            or parent_disabled is NULL or <object>parent_disabled is not False):
        s.access_version = 0
        return False
    s.access_handlers_now, s.parent_handlers_now = access_handlers, parent_handlers
    s.access_filters_now, s.parent_filters_now, s.handler_filters_now = access_filters, parent_filters, handler_filters
    s.access_version = _dict_version(s.access_dict)
    s.parent_version = _dict_version(s.parent_dict)
    s.handler_version = _dict_version(s.handler_dict)
    return (_same_items(access_handlers, s.access_handlers) and _same_items(parent_handlers, s.parent_handlers)
            and PyList_GET_SIZE(access_filters) == 0 and PyList_GET_SIZE(parent_filters) == 0
            and PyList_GET_SIZE(handler_filters) == 0)


cdef int log_access(object conn, RequestCycle cycle, str where) except -1:
    """The access line of ``cycle`` (complete), which ran ``where`` ("worker", "pool")."""
    cdef _State s = _state
    if s is not None and _only_defaults(s):
        line = _json_line(s, cycle, where) if s.json else _text_line(s, cycle)
        if line is not None:
            _add(s, line)
            return 0
    _fallback(conn, cycle, where)
    return 0


cdef inline int _add(_State s, line) except -1:
    # logs._Pending.add: the first line since the flusher last took them wakes it; a full buffer is written now
    cdef list lines = s.lines
    PyList_Append(lines, line)
    cdef PyObject* told = PyDict_GetItemWithError(s.pending_dict, "told")  # (pending.told, a plain attribute)
    if told is NULL or <object>told is not True:
        s.pending.tell()
    elif PyList_GET_SIZE(lines) >= s.limit:
        s.pending.flush()
    return 0


# -- the fields, as the line has them ----------------------------------------------------------------------

cdef inline bint _ucs1(object text):
    """A str whose characters are all below U+0100: its data are those characters' latin-1 bytes."""
    return type(text) is str and PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND


cdef object _client_text(_State s, object scope):
    """scope["client"] as the line has it ("HOST:PORT", "-"; JSON: escaped and quoted), as latin-1 bytes, made
    once a client; None when this module leaves the line to log_http_access."""
    cdef PyObject* found = PyDict_GetItemWithError(scope, "client")
    if found is NULL:
        return None
    client = <object>found
    if client is None:
        return b'"-"' if s.json else b"-"
    if type(client) is not tuple:
        return None
    found = PyDict_GetItemWithError(s.clients, client)
    if found is not NULL:
        return <object>found
    text = f"{client[0]}:{client[1]}" if client else "-"
    value = None
    if _ucs1(text):
        value = _escaped(text) if s.json else (<str>text).encode("latin-1")
    if len(s.clients) >= 4096:
        s.clients.clear()
    s.clients[client] = value
    return value


cdef bytes _escaped(str text):
    """'"TEXT"' as json.encoder.encode_basestring_ascii writes it (text below U+0100)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef char* buf = <char*>PyMem_Malloc(6 * n + 2)
    if buf is NULL:
        raise MemoryError()
    cdef char* end
    try:
        buf[0] = b'"'
        end = _put_escaped(buf + 1, <const unsigned char*>PyUnicode_DATA(text), n)
        end[0] = b'"'
        return buf[:end + 1 - buf]
    finally:
        PyMem_Free(buf)


cdef inline char* _put(char* p, const char* data, Py_ssize_t n) noexcept:
    memcpy(p, data, n)
    return p + n


cdef inline char* _put_str(char* p, str text) noexcept:  # (text is _ucs1)
    return _put(p, <const char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))


cdef inline char* _put_bytes(char* p, bytes data) noexcept:
    return _put(p, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef char* _put_int(char* p, long long value) noexcept:
    cdef char digits[24]
    cdef int n = 0
    cdef unsigned long long v = <unsigned long long>(-value) if value < 0 else <unsigned long long>value
    if value < 0:
        p[0] = b"-"
        p += 1
    while True:
        digits[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    while n:
        n -= 1
        p[0] = digits[n]
        p += 1
    return p


cdef inline char* _put_json(char* p, const unsigned char* data, Py_ssize_t n) noexcept:
    p[0] = b'"'
    p = _put_escaped(p + 1, data, n)
    p[0] = b'"'
    return p + 1


cdef char* _put_escaped(char* p, const unsigned char* data, Py_ssize_t n) noexcept:
    """DATA, each byte a character below U+0100, escaped as json's ensure_ascii encoder escapes it: printable
    ASCII as it is except " and \\, the short escapes (\\b \\f \\n \\r \\t), everything else \\u00XX."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = data[i]
        if 32 <= c <= 126 and c != 34 and c != 92:
            p[0] = <char>c
            p += 1
            continue
        p[0] = b"\\"
        if c == 34 or c == 92:
            p[1] = <char>c
        elif c == 8:
            p[1] = b"b"
        elif c == 12:
            p[1] = b"f"
        elif c == 10:
            p[1] = b"n"
        elif c == 13:
            p[1] = b"r"
        elif c == 9:
            p[1] = b"t"
        else:
            p[1] = b"u"
            p[2] = b"0"
            p[3] = b"0"
            p[4] = _HEX[c >> 4]
            p[5] = _HEX[c & 15]
            p += 4
        p += 2
    return p


cdef object _scope_value(object scope, str key, type kind):
    """scope[key] if it is exactly of ``kind`` (a str: below U+0100), else None."""
    cdef PyObject* found = PyDict_GetItemWithError(scope, key)
    if found is NULL or type(<object>found) is not kind:
        return None
    if kind is str and not _ucs1(<object>found):
        return None
    return <object>found


cdef object _request_id(object scope):
    """scope["extensions"]["hybrid.request_id"]["id"], reading a LazyRequestId (request_id.py) as its own ``[]``
    would, without its Python-level wrapper: a new id when the request has no id header, made here as
    RequestIds.for_headers makes it; a header's id checked by for_headers itself."""
    cdef PyObject* found = PyDict_GetItemWithError(scope, "extensions")
    if found is not NULL and type(<object>found) is dict:
        found = PyDict_GetItemWithError(<object>found, REQUEST_ID_KEY)
    if found is NULL or type(<object>found) is not LazyRequestId:
        return scope["extensions"][REQUEST_ID_KEY]["id"]
    lazy = <object>found
    ids = lazy._ids
    if ids is not None:  # (LazyRequestId._fill)
        headers = lazy._headers
        value = _new_id(ids, headers) if type(headers) is list else None
        if value is None:
            value = ids.for_headers(headers)
        lazy._ids = None
        PyDict_SetItem(lazy, "id", value)
        lazy._headers = None
    found = PyDict_GetItemWithError(lazy, "id")
    return <object>found if found is not NULL else lazy["id"]


cdef object _ids, _incoming, _prefix, _next  # the last RequestIds seen, and what _new_id reads of it

cdef object _new_id(object ids, list headers):
    """RequestIds.for_headers(headers) when no header is named ``ids.incoming`` (prefix, then the counter in
    hex); None when one is (for_headers checks its value) or the headers are not bytes pairs."""
    global _ids, _incoming, _prefix, _next
    if ids is not _ids:  # (one RequestIds a server, set once: its attributes are read once)
        if type(ids) is not RequestIds:
            return None
        _ids, _incoming, _prefix, _next = None, ids.incoming, ids.prefix, ids._next
        _ids = ids
    incoming = _incoming
    if type(incoming) is not bytes:
        return None
    cdef Py_ssize_t size = PyBytes_GET_SIZE(incoming)
    cdef const char* name = PyBytes_AS_STRING(incoming)
    for item in headers:
        if type(item) is not tuple or PyTuple_GET_SIZE(item) != 2 or type((<tuple>item)[0]) is not bytes:
            return None
        field = (<tuple>item)[0]
        if PyBytes_GET_SIZE(field) == size and memcmp(PyBytes_AS_STRING(field), name, size) == 0:
            return None
    prefix = _prefix
    number = _next()
    if type(prefix) is not str or not _ucs1(prefix) or type(number) is not int or number < 0 \
            or number >= 1 << 64:
        return f"{prefix}{number:x}"
    cdef unsigned long long n = PyLong_AsUnsignedLongLong(number)
    cdef char digits[16]
    cdef int i = 16
    while True:
        i -= 1
        digits[i] = _HEX[n & 15]
        n >>= 4
        if n == 0:
            break
    cdef Py_ssize_t prefix_len = PyUnicode_GET_LENGTH(prefix)
    cdef char stack[256]
    if prefix_len > 256 - 16:
        return f"{prefix}{number:x}"
    memcpy(stack, PyUnicode_DATA(prefix), prefix_len)
    memcpy(stack + prefix_len, digits + i, 16 - i)
    return PyUnicode_DecodeLatin1(stack, prefix_len + 16 - i, NULL)


# -- the two lines -----------------------------------------------------------------------------------------

cdef object _text_line(_State s, RequestCycle cycle):
    """'INFO:     CLIENT - "METHOD PATH?QUERY HTTP/VERSION" STATUS\\n', or None."""
    scope = cycle.scope
    if type(scope) is not dict:
        return None
    raw_path = _scope_value(scope, "raw_path", bytes)
    query = _scope_value(scope, "query_string", bytes)
    method = _scope_value(scope, "method", str)
    version = _scope_value(scope, "http_version", str)
    client = _client_text(s, scope)
    if raw_path is None or query is None or method is None or version is None or client is None:
        return None
    cdef Py_ssize_t size = (PyBytes_GET_SIZE(s.prefix) + PyBytes_GET_SIZE(client) + PyBytes_GET_SIZE(raw_path)
                            + PyBytes_GET_SIZE(query) + PyUnicode_GET_LENGTH(method)
                            + PyUnicode_GET_LENGTH(version) + 80)
    cdef char stack[STACK_LINE]
    cdef char* buf = <char*>stack
    if size > STACK_LINE:
        buf = <char*>PyMem_Malloc(size)
    if buf is NULL:
        raise MemoryError()
    cdef char* p = buf
    try:
        p = _put_bytes(p, s.prefix)
        p = _put_bytes(p, client)
        p = _put(p, b' - "', 4)
        p = _put_str(p, method)
        p[0] = b" "
        p = _put_bytes(p + 1, raw_path)
        if PyBytes_GET_SIZE(query):
            p[0] = b"?"
            p = _put_bytes(p + 1, query)
        p = _put(p, b" HTTP/", 6)
        p = _put_str(p, version)
        p = _put(p, b'" ', 2)
        p = _put_int(p, cycle.status)
        p[0] = b"\n"
        return PyUnicode_DecodeLatin1(buf, p + 1 - buf, NULL)
    finally:
        if buf is not stack:
            PyMem_Free(buf)


cdef object _json_line(_State s, RequestCycle cycle, str where):
    """The JsonAccessFormatter object of the request, as logs.log_http_access writes it, or None."""
    scope = cycle.scope
    if type(scope) is not dict:
        return None
    raw_path = _scope_value(scope, "raw_path", bytes)
    query = _scope_value(scope, "query_string", bytes)
    method = _scope_value(scope, "method", str)
    version = _scope_value(scope, "http_version", str)
    client = _client_text(s, scope)
    if raw_path is None or query is None or method is None or version is None or client is None:
        return None
    request_id = _request_id(scope)
    if not _ucs1(request_id) or not _ucs1(where):
        return None
    cdef timespec now, clock
    clock_gettime(CLOCK_REALTIME, &now)  # time.time_ns()
    clock_gettime(CLOCK_MONOTONIC, &clock)  # time.perf_counter(), as cycle.started was taken
    # f"{ms:.3f}" with its trailing zeros dropped, one kept after the point: repr(round(ms, 3)), as the formatter
    # writes it (logs.log_http_access says why they agree)
    cdef long long clock_ns = <long long>clock.tv_sec * 1000000000 + clock.tv_nsec
    cdef double ms = (<double>clock_ns / 1e9 - cycle.started) * 1000
    cdef char* duration = PyOS_double_to_string(ms, b"f", 3, 0, NULL)
    cdef Py_ssize_t duration_len = strlen(duration)
    while duration_len and duration[duration_len - 1] == b"0":
        duration_len -= 1
    cdef Py_ssize_t size = (6 * (PyBytes_GET_SIZE(raw_path) + PyBytes_GET_SIZE(query) + PyUnicode_GET_LENGTH(method)
                                 + PyUnicode_GET_LENGTH(version) + PyUnicode_GET_LENGTH(request_id))
                            + PyBytes_GET_SIZE(client) + PyUnicode_GET_LENGTH(where) + duration_len + 240)
    cdef char stack[STACK_LINE]
    cdef char* buf = <char*>stack
    if size > STACK_LINE:
        buf = <char*>PyMem_Malloc(size)
    cdef char* p = buf
    cdef tm parts
    cdef time_t second = now.tv_sec
    cdef long millis = now.tv_nsec // 1000000
    try:
        if buf is NULL:
            raise MemoryError()
        if second != s.second:  # one strftime a second
            gmtime_r(&second, &parts)
            s.stamp_len = strftime(s.stamp, sizeof(s.stamp), b'{"time":"%Y-%m-%dT%H:%M:%S.', &parts)
            s.second = second
        p = _put(p, s.stamp, s.stamp_len)
        p[0] = <char>(48 + millis // 100)
        p[1] = <char>(48 + millis // 10 % 10)
        p[2] = <char>(48 + millis % 10)
        p = _put(p + 3, b'Z","method":', 12)
        p = _put_json(p, <const unsigned char*>PyUnicode_DATA(method), PyUnicode_GET_LENGTH(method))
        p = _put(p, b',"path":', 8)
        p[0] = b'"'
        p = _put_escaped(p + 1, <const unsigned char*>PyBytes_AS_STRING(raw_path), PyBytes_GET_SIZE(raw_path))
        if PyBytes_GET_SIZE(query):  # (one JSON string: "/path?query")
            p[0] = b"?"
            p = _put_escaped(p + 1, <const unsigned char*>PyBytes_AS_STRING(query), PyBytes_GET_SIZE(query))
        p[0] = b'"'
        p += 1
        p = _put(p, b',"status":', 10)
        p = _put_int(p, cycle.status)
        p = _put(p, b',"bytes":', 9)
        p = _put_int(p, cycle.sent)
        p = _put(p, b',"duration_ms":', 15)
        p = _put(p, duration, duration_len)
        if duration_len and duration[duration_len - 1] == b".":
            p[0] = b"0"
            p += 1
        p = _put(p, b',"client":', 10)
        p = _put_bytes(p, client)
        p = _put(p, b',"request_id":', 14)
        p = _put_json(p, <const unsigned char*>PyUnicode_DATA(request_id), PyUnicode_GET_LENGTH(request_id))
        p = _put(p, b',"where":"', 10)
        p = _put_str(p, where)
        p = _put(p, b'","http_version":', 17)
        p = _put_json(p, <const unsigned char*>PyUnicode_DATA(version), PyUnicode_GET_LENGTH(version))
        p = _put(p, b"}\n", 2)
        return PyUnicode_DecodeLatin1(buf, p - buf, NULL)
    finally:
        PyMem_Free(duration)
        if buf is not stack and buf is not NULL:
            PyMem_Free(buf)
