# Byte-level checks and builders of HTTP/1.1 text for h1.pyx: header names and values (RFC 9110 section 5), Host
# (RFC 3986), Content-Length digits, chunk framing (RFC 9112 section 7.1) and absolute-form targets. Inline C
# functions: they run per header or per body piece, and none makes a Python object it does not return.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcpy


cdef inline bint _lower_is(bytes name, const char* lowered):
    # name.lower() == lowered, for a name of the same length, without making the lowered copy
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(name)
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(len(name)):
        c = p[i]
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned char>lowered[i]:
            return False
    return True


cdef inline long long _digits(bytes value):
    # a decimal Content-Length, or -1 if it is not 1 to 18 digits
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t i, n = len(value)
    cdef long long total = 0
    if n == 0 or n > 18:
        return -1
    for i in range(n):
        if not 48 <= p[i] <= 57:
            return -1
        total = total * 10 + (p[i] - 48)
    return total


cdef inline bytes _length_line(long long n):
    cdef char buf[48]
    cdef int k = snprintf(buf, sizeof(buf), "content-length: %lld\r\n", n)
    return PyBytes_FromStringAndSize(buf, k)


cdef inline int _hex_line(char* out, size_t n) noexcept:
    # "<hex n>\r\n" into out (at least 19 bytes); returns its length. By hand: snprintf's format parsing was a
    # visible share of a stream's CPU per event.
    cdef char digits[16]
    cdef int k = 0, i
    while True:
        digits[k] = b"0123456789abcdef"[n & 15]
        k += 1
        n >>= 4
        if n == 0:
            break
    for i in range(k):
        out[i] = digits[k - 1 - i]
    out[k] = 13
    out[k + 1] = 10
    return k + 2


cdef inline bytes _chunk(bytes data, bint last):
    # "<hex size>\r\n<data>\r\n" (and the last chunk), built in one allocation: streams send one per event
    cdef char head[24]
    cdef Py_ssize_t n = len(data)
    cdef int k = _hex_line(head, <size_t>n)
    cdef Py_ssize_t total = k + n + 2 + (5 if last else 0)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* p = PyBytes_AS_STRING(out)
    memcpy(p, head, k)
    memcpy(p + k, PyBytes_AS_STRING(data), n)
    memcpy(p + k + n, b"\r\n", 2)
    if last:
        memcpy(p + k + n + 2, b"0\r\n\r\n", 5)
    return out


cdef inline bint _has_forbidden_byte(bytes value):
    # CR, LF and NUL in a header would let the app split the response (RFC 9110 section 5.5).
    cdef const char* p = value
    cdef size_t n = len(value)
    return (memchr(p, 13, n) != NULL or memchr(p, 10, n) != NULL or memchr(p, 0, n) != NULL)


cdef inline bint _is_token(bytes value):
    # tchar from RFC 9110 section 5.6.2
    cdef unsigned char c
    if not value:
        return False
    for c in value:
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"!#$%&'*+-.^_`|~"):
            return False
    return True


cdef inline bint _valid_host(bytes value):
    # RFC 3986 section 3.2.2-3: reg-name / IPv4 / [IP-literal], then an optional ":" port. Checked by bytes:
    # unreserved, sub-delims, "%" (pct-encoded), ":" and brackets; no space, "/", "?", "#", "@" or controls.
    cdef unsigned char c
    for c in value:
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-._~!$&'()*+,;=%:[]"):
            return False
    return True


cdef inline bint _has_token(bytes value, bytes token):
    # A comma-separated header list containing ``token`` (case-insensitive), e.g. "websocket" in Upgrade.
    for part in value.split(b","):
        if part.strip(b" \t").lower() == token:
            return True
    return False


cdef inline bytes _origin_form(bytes target):
    # absolute-form (RFC 9112 section 3.2.2): "http://host:port/path?query" -> "/path?query"
    cdef Py_ssize_t start = target.find(b"://") + 3
    cdef Py_ssize_t slash = target.find(b"/", start)
    cdef Py_ssize_t q = target.find(b"?", start)
    if slash < 0 or 0 <= q < slash:
        return b"/" + (target[q:] if q >= 0 else b"")
    return target[slash:]
