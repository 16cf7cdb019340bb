# cython: language_level=3
"""HTTP/2 field sections checked and normalized in one compiled pass (RFC 9113 sections 8.2 and 8.3).

Why: h2's own validation and normalization (H2Configuration validate_/normalize_inbound/outbound_headers) are
seven chained Python generators per header block, about 30% of h2's cost per request; hybrid/h2/session.py
turns them off and calls these instead. Every check h2 made still holds (tests/test_h2_conformance.py); a
malformed request ends the connection with GOAWAY PROTOCOL_ERROR, as h2's ProtocolError did. h2 itself still
checks content-length against the DATA received.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_ITEM, PyTuple_GET_SIZE

from hpack.struct import NeverIndexedHeaderTuple


class FieldError(ValueError):
    """A malformed request field section (the session answers GOAWAY PROTOCOL_ERROR)."""


cdef frozenset CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                                                b"transfer-encoding", b"upgrade"))  # section 8.2.2
cdef frozenset SECURE = frozenset((b"authorization", b"proxy-authorization"))  # never indexed (as h2 did)

# Section 8.2.1: a field name holds no 0x00-0x20, 0x41-0x5a (upper case) or 0x7f-0xff.
cdef unsigned char NAME_OK[256]
cdef int _c
for _c in range(256):
    NAME_OK[_c] = 1 if 0x21 <= _c <= 0x7e and not (0x41 <= _c <= 0x5a) else 0

cdef enum:
    METHOD = 1
    SCHEME = 2
    AUTHORITY = 4
    PATH = 8
    PROTOCOL = 16


cdef int _check(bytes name, bytes value) except -1:
    """Section 8.2.1: name characters (a colon only as a pseudo-header's first), value characters."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name), i
    cdef unsigned char c
    if n == 0:
        raise FieldError("Received header name with zero length.")
    for i in range(n):
        c = p[i]
        if not NAME_OK[c] or (c == 0x3a and i):
            raise FieldError(f"Illegal character {chr(c)!r} in header name: {name!r}")
    p = <const unsigned char *>PyBytes_AS_STRING(value)
    n = PyBytes_GET_SIZE(value)
    if n:
        for i in range(n):
            c = p[i]
            if c == 0 or c == 0x0a or c == 0x0d:
                raise FieldError(f"Illegal character {chr(c)!r} in header value: {value!r}")
        if p[0] == 0x20 or p[0] == 0x09 or p[n - 1] == 0x20 or p[n - 1] == 0x09:
            raise FieldError(f"Received header value surrounded by whitespace {value!r}")
    return 0


cdef int _regular(bytes name, bytes value) except -1:
    """Section 8.2.2: no connection-specific field; TE only as "trailers"."""
    if name in CONNECTION_SPECIFIC:
        raise FieldError(f"Connection-specific header field present: {name!r}.")
    if name == b"te" and value.lower() != b"trailers":
        raise FieldError(f"Invalid value for TE header: {value!r}")
    return 0


cdef inline tuple _pair(object header):
    """A field as a tuple, read by the tuple's own slots: hpack's ``HeaderTuple`` is a Python subclass of tuple,
    whose ``sq_item`` (what a generic ``header[0]`` takes in C) is CPython's slot wrapper, ~750 instructions a
    call against a few for ``PyTuple_GET_ITEM``."""
    return <tuple>header if PyTuple_Check(header) else tuple(header)


def request_fields(headers, list seen=None):
    """A request's header block, as the HPACK decoder gives it: (method, path, authority, fields), fields being
    the regular (name, value) pairs with the cookie fields joined last (section 8.2.3) and :authority as Host
    first when no Host came (section 8.3.1). FieldError for anything section 8.2 or 8.3 forbids.

    ``seen``: a connection's one-item list, where the last block that passed is kept as (its header objects, the
    answer). A client's requests repeat their blocks, and the HPACK decoder gives back the same header tuples for
    the same bytes (hpack_codec.Decoder), so the very same objects again (tuples of bytes: immutable) are the
    same answer, given without checking them again (with a new list of fields: a scope's are the app's)."""
    cdef list before, given
    cdef Py_ssize_t i, n
    if seen is None or type(headers) is not list:
        return _request_fields(headers)
    last = seen[0]
    if last is not None:
        before = <list>(<tuple>last)[0]
        given = <list>headers
        n = len(given)
        if n == len(before):
            for i in range(n):
                if given[i] is not before[i]:
                    break
            else:
                method, path, authority, fields = <tuple>(<tuple>last)[1]
                return method, path, authority, list(fields)
    result = _request_fields(headers)
    seen[0] = (list(headers), (result[0], result[1], result[2], list(result[3])))
    return result


cdef tuple _request_fields(headers):
    cdef int seen = 0, bit
    cdef bint regular = False
    cdef bytes name, value
    cdef object method = None, path = None, authority = None, host = None
    cdef list fields = []
    cdef list cookies = None
    cdef tuple pair
    for header in headers:
        pair = _pair(header)
        name = pair[0]
        value = pair[1]
        _check(name, value)
        if PyBytes_AS_STRING(name)[0] == b":":
            if name == b":method":
                bit = METHOD
                method = value
            elif name == b":path":
                bit = PATH
                path = value
            elif name == b":scheme":
                bit = SCHEME
            elif name == b":authority":
                bit = AUTHORITY
                authority = value
            elif name == b":protocol":
                bit = PROTOCOL
            elif name == b":status":
                raise FieldError("Encountered response-only headers {b':status'}")
            else:
                raise FieldError(f"Received custom pseudo-header field {name!r}")
            if seen & bit:
                raise FieldError(f"Received duplicate pseudo-header field {name!r}")
            if regular:
                raise FieldError(f"Received pseudo-header field out of sequence: {name!r}")
            seen |= bit
            continue
        regular = True
        _regular(name, value)
        if name == b"cookie":
            if cookies is None:
                cookies = []
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None:
                raise FieldError("Request header block has multiple Host headers.")
            host = value
        fields.append((name, value))
    if not seen & METHOD:
        raise FieldError("Header block missing mandatory b':method' header")
    connect = method == b"CONNECT"
    if connect and not seen & PROTOCOL:  # ordinary CONNECT (section 8.5)
        if seen & (SCHEME | PATH):
            raise FieldError("Ordinary CONNECT MUST NOT include :scheme or :path")
    else:
        if not seen & SCHEME:
            raise FieldError("Header block missing mandatory b':scheme' header")
        if not seen & PATH:
            raise FieldError("Header block missing mandatory b':path' header")
        if not connect and seen & PROTOCOL:
            raise FieldError("Encountered connect-request-only headers {b':protocol'}")
    if path is not None and not path:
        raise FieldError("An empty :path header is forbidden")
    if authority is None:
        if host is None:
            raise FieldError("Request header block does not have an :authority or Host header.")
    elif host is None:
        fields.insert(0, (b"host", authority))
    elif host != authority:
        raise FieldError(f"Request header block has mismatched :authority and Host headers: "
                         f"{authority!r} / {host!r}")
    if cookies is not None:
        fields.append((b"cookie", b"; ".join(cookies)))
    return (method, path, authority, fields)


def check_trailers(headers):
    """A request's trailer section: section 8.2's rules, and no pseudo-header (section 8.1)."""
    cdef bytes name, value
    cdef tuple pair
    for header in headers:
        pair = _pair(header)
        name = pair[0]
        value = pair[1]
        _check(name, value)
        if PyBytes_AS_STRING(name)[0] == b":":
            raise FieldError(f"Received pseudo-header in trailer {name!r}")
        _regular(name, value)


cdef inline bint _space(unsigned char c):
    return c == 0x20 or 0x09 <= c <= 0x0d  # (what bytes.strip() strips: SP, HT, LF, VT, FF, CR)


cdef bint _plain(bytes field, bint name):
    """``field`` is what ``.lower().strip()`` (a name) or ``.strip()`` (a value) would leave it: most are, and
    the three method calls per field cost more than the rest of the normalization."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(field)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(field), i
    if n and (_space(p[0]) or _space(p[n - 1])):
        return False
    if name:
        for i in range(n):
            if 0x41 <= p[i] <= 0x5a:
                return False
    return True


# The last response headers normalized whose fields were all (bytes, bytes) tuples, as (those tuples, the
# answer): an app that sends the same fields again (a constant list, or a framework's fresh list of the same
# values) gets the same answer, in a new list, without normalizing them again (bytes are immutable: the same
# values are the same answer). One entry for every thread: it is replaced whole, and read once a call.
cdef tuple _last_response = None


cdef inline bint _same_field(header, tuple before):
    """``header`` is a (bytes, bytes) tuple equal to ``before``, one of the kept ones."""
    if header is before:
        return True
    if type(header) is not tuple or PyTuple_GET_SIZE(header) != 2:
        return False
    name = <object>PyTuple_GET_ITEM(header, 0)
    value = <object>PyTuple_GET_ITEM(header, 1)
    return (type(name) is bytes and type(value) is bytes and <bytes>name == <bytes>before[0]
            and <bytes>value == <bytes>before[1])


def response_fields(headers):
    """An app's response headers (or trailers) as they go out: names lower-cased, names and values stripped of
    surrounding whitespace, connection-specific fields dropped (section 8.2.2), authorization fields and short
    cookies never indexed (HPACK, RFC 7541 section 7.1.3), as h2's normalization did. ValueError for what h2
    refused to send: a TE other than "trailers", a pseudo-header or an empty name from the app."""
    global _last_response
    cdef tuple before
    cdef Py_ssize_t i, n
    kind = type(headers)
    if kind is not list and kind is not tuple:
        return _response_fields(headers)
    n = len(headers)
    last = _last_response
    if last is not None:
        before = <tuple>(<tuple>last)[0]
        if len(before) == n:
            for i in range(n):
                if not _same_field(headers[i], <tuple>before[i]):
                    break
            else:
                return list(<tuple>(<tuple>last)[1])
    out = _response_fields(headers)
    for header in headers:
        if not (type(header) is tuple and len(<tuple>header) == 2 and type((<tuple>header)[0]) is bytes
                and type((<tuple>header)[1]) is bytes):
            return out  # (not kept: a field that could change in place, or one whose equal values differ)
    _last_response = (tuple(headers), tuple(out))
    return out


cdef list _response_fields(headers):
    cdef list out = []
    cdef bytes name, value
    for header in headers:
        raw = header[0]
        name = <bytes>raw if type(raw) is bytes and _plain(<bytes>raw, True) else bytes(raw).lower().strip()
        raw = header[1]
        value = <bytes>raw if type(raw) is bytes and _plain(<bytes>raw, False) else bytes(raw).strip()
        if not name or PyBytes_AS_STRING(name)[0] == b":":
            raise ValueError(f"ASGI: invalid HTTP/2 response header name {name!r}")
        if name in CONNECTION_SPECIFIC:
            continue
        if name == b"te" and value.lower() != b"trailers":
            raise ValueError(f"ASGI: invalid value for the TE response header: {value!r}")
        if name in SECURE or (name == b"cookie" and PyBytes_GET_SIZE(value) < 20):
            out.append(NeverIndexedHeaderTuple(name, value))
        else:
            out.append((name, value))
    return out
