# cython: language_level=3
"""The response half of H1Protocol (h1.pyx): what goes back for each request, framed as RFC 9112 asks.

``H1Response`` is H1Protocol's base class: it holds the requests not yet answered (oldest first: pipelined
responses go out in order) and the response being written, and turns ``send_response()`` / ``send_body()`` /
``send_trailers()`` into bytes (Content-Length, chunked, or to the close for HTTP/1.0; no body for HEAD, 204,
304). The parsing half (h1.pyx) appends each request head it completes to ``_unanswered``. Neither touches a
socket.
"""

from http import HTTPStatus

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdio cimport snprintf
from libc.string cimport memcpy
from libc.time cimport gmtime_r, time, time_t, tm

from hybrid._speedups.h1_bytes cimport (
    _chunk,
    _digits,
    _has_forbidden_byte,
    _is_token,
    _length_line,
    _lower_is,
)
from hybrid._speedups.h1_events cimport Request
from hybrid._speedups.h1_ext cimport _early_hints, _trailer_fields
from hybrid._speedups.h1_te cimport _app_codings


class LocalProtocolError(Exception):
    """The application asked for a response that HTTP/1.1 cannot express (bad status, header or length)."""


cdef str HTTP_11 = "1.1"
cdef str HTTP_10 = "1.0"

# Status lines are built once; the reason phrase is informational (RFC 9112 section 4).
cdef list _STATUS_LINES = [None] * 600  # (indexed by status, 100 to 599)
for _status in range(100, 600):
    try:
        _phrase = HTTPStatus(_status).phrase
    except ValueError:
        _phrase = ""
    _STATUS_LINES[_status] = f"HTTP/1.1 {_status} {_phrase}\r\n".encode("latin-1")

CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes SERVER_LINE = b"server: hybrid\r\n"
cdef bytes CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
cdef bytes CLOSE_LINE = b"connection: close\r\n"
cdef bytes KEEP_ALIVE_LINE = b"connection: keep-alive\r\n"
cdef bytes LAST_CHUNK = b"0\r\n\r\n"

# The Date header changes once per second; cache it (shared by all threads, replaced atomically under the GIL).
cdef time_t _date_second = 0
cdef bytes _date_line = b""


# IMF-fixdate (RFC 9110 section 5.6.7) names, in English whatever the process locale (strftime's %a and %b are not)
cdef const char* _DAYS = b"SunMonTueWedThuFriSat"
cdef const char* _MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"


cdef inline bytes _current_date_line():
    global _date_second, _date_line
    cdef time_t now = time(NULL)
    cdef tm t
    cdef char buf[48]
    cdef int n
    if now != _date_second:
        gmtime_r(&now, &t)
        n = snprintf(buf, sizeof(buf), b"date: %.3s, %02d %.3s %04d %02d:%02d:%02d GMT\r\n", _DAYS + 3 * t.tm_wday,
                     t.tm_mday, _MONTHS + 3 * t.tm_mon, t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec)
        _date_line = buf[:n]
        _date_second = now
    return _date_line


cdef inline char* _put(char* p, bytes data) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    memcpy(p, PyBytes_AS_STRING(data), n)
    return p + n


cdef class H1Response:
    """The responses of one HTTP/1.1 server connection (H1Protocol, h1.pyx, is the whole protocol)."""

    def __cinit__(self):
        self._unanswered = []

    def send_continue(self):
        """The interim ``100 Continue`` response (RFC 9110 section 10.1.1)."""
        return CONTINUE_RESPONSE

    cpdef bytes send_response(self, int status, headers, long long content_length=-1, bytes body=None):
        """Return the head of the response to the oldest unanswered request.

        ``content_length`` >= 0 means the caller already holds the whole body of that size: a Content-Length
        header is added unless the application sent framing headers itself. Otherwise the body is chunked
        (HTTP/1.1) or delimited by closing the connection (HTTP/1.0). ``body``: that whole body, framed after
        the head in the same bytes (``send_body(body, False)`` included: the response is complete).
        """
        cdef Request req
        cdef list tail = []  # the lines after the app's fields
        cdef bytes name, value, piece
        cdef Py_ssize_t n, size
        cdef bint has_length = False, has_server = False, has_date = False, has_close = False
        cdef list te_values = None
        cdef char* p
        if not self._unanswered:
            raise LocalProtocolError("No request is waiting for a response")
        if status < 200 or status > 999:
            raise LocalProtocolError(f"Invalid response status {status!r}: must be between 200 and 999")
        # The request stays unanswered until its head is built: a bad header leaves room for a 500.
        req = self._unanswered[0]
        self._resp_close = self._closing or not req.keep_alive
        self._resp_remaining = -1
        self._resp_chunked = False
        self._resp_no_body = req.method == b"HEAD" or status == 204 or status == 304
        line = _STATUS_LINES[status] if status < 600 else f"HTTP/1.1 {status} \r\n".encode("latin-1")
        if type(headers) is not list and type(headers) is not tuple:
            headers = list(headers)  # (read twice below: measured, then copied)
        size = len(line) + 2
        for pair in headers:
            name, value = pair
            if _has_forbidden_byte(name) or _has_forbidden_byte(value) or not _is_token(name):
                raise LocalProtocolError(f"Invalid response header {name!r}: {value!r}")
            n = len(name)
            if n == 14 and _lower_is(name, b"content-length"):
                self._resp_remaining = _digits(value)
                if self._resp_remaining < 0:
                    # (1*DIGIT, RFC 9110 section 8.6: int() would also take " 13", "+13" or "1_3")
                    raise LocalProtocolError(f"Invalid Content-Length {value!r}")
                has_length = True
            elif n == 17 and _lower_is(name, b"transfer-encoding"):
                te_values = [value] if te_values is None else te_values + [value]
                continue  # (framing is ours: the header is rebuilt below)
            elif n == 10 and _lower_is(name, b"connection"):
                if value.lower().find(b"close") >= 0:
                    self._resp_close = True
                    has_close = True
            elif n == 6 and _lower_is(name, b"server"):
                has_server = True
            elif n == 4 and _lower_is(name, b"date"):
                has_date = True
            size += n + len(value) + 4
        if te_values is not None:
            self._app_transfer_coding(req, status, te_values, has_length, tail)
        elif not has_length and status != 204 and status != 304:
            if self._resp_no_body and content_length <= 0:
                # HEAD whose app sent no body: say nothing rather than a length of 0 that GET's body need not
                # have (RFC 9110 sections 8.6, 9.3.2). A body it did send is the GET's: its length is true.
                pass
            elif content_length >= 0:
                tail.append(_length_line(content_length))
                self._resp_remaining = content_length
            elif req.http_version == HTTP_11:
                tail.append(CHUNKED_LINE)
                self._resp_chunked = True
            else:
                self._resp_close = True
        if self._server_header and not has_server:
            tail.append(SERVER_LINE)
        if self._date_header and not has_date:
            tail.append(_current_date_line())
        if self._extra_headers is not None:
            tail.append(self._extra_headers)
        if self._resp_close and not has_close:
            tail.append(CLOSE_LINE)
        elif req.http_version == HTTP_10:
            tail.append(KEEP_ALIVE_LINE)
        for piece in tail:
            size += len(piece)
        # One allocation for the head (and a Content-Length body): no list of pieces, no join, no concatenation.
        cdef bint inline_body = body is not None and not self._resp_no_body and not self._resp_chunked
        out = PyBytes_FromStringAndSize(NULL, size + (len(body) if inline_body else 0))
        p = _put(PyBytes_AS_STRING(out), line)
        for pair in headers:  # (the same fields: no Python code ran since they were measured)
            name, value = pair
            n = len(name)
            if te_values is not None and n == 17 and _lower_is(name, b"transfer-encoding"):
                continue
            p = _put(p, name)
            p[0] = 58  # ": "
            p[1] = 32
            p = _put(p + 2, value)
            p[0] = 13
            p[1] = 10
            p += 2
        for piece in tail:
            p = _put(p, piece)
        p[0] = 13
        p[1] = 10
        del self._unanswered[0]
        self._responding = req
        if body is None:
            return out
        if not inline_body:
            return out + self.send_body(body, False)
        n = len(body)
        if self._resp_remaining >= 0:  # (as send_body: a body longer than the app's own Content-Length)
            if n > self._resp_remaining:
                raise LocalProtocolError(
                    f"Response body longer than its Content-Length ({n} more bytes than "
                    f"the {self._resp_remaining} still expected)"
                )
            self._resp_remaining -= n
        memcpy(p + 2, PyBytes_AS_STRING(body), n)
        self._finish_response()
        return out

    cdef _app_transfer_coding(self, Request req, int status, list values, bint has_length, list out):
        # The app set Transfer-Encoding: it sends the body raw (already in its codings), we frame it, with
        # chunked last in the header (RFC 9112 section 6.1: else the client reads to close and desynchronises).
        codings = _app_codings(values)
        if codings is None or has_length:
            raise LocalProtocolError(f"Invalid response Transfer-Encoding {values!r}" if codings is None else
                                     "Both Content-Length and Transfer-Encoding in a response")
        if status == 204:
            return  # (MUST NOT send it, RFC 9112 section 6.1)
        if req.http_version == HTTP_10:
            # HTTP/1.0 has no Transfer-Encoding: the body is delimited by closing; a coding would go unannounced.
            if codings and not self._resp_no_body:
                raise LocalProtocolError(f"Transfer-Encoding {codings.decode('latin-1')!r} for an HTTP/1.0 client")
            self._resp_close = not self._resp_no_body or self._resp_close
            return
        out.append(b"transfer-encoding: " + codings + b", chunked\r\n" if codings else CHUNKED_LINE)
        self._resp_chunked = not self._resp_no_body  # (HEAD and 304 announce the GET's framing, send no body)

    cpdef bytes send_body(self, bytes data, bint more):
        """Return the bytes for one piece of response body; ``more=False`` ends the response."""
        cdef Py_ssize_t n = len(data)
        if self._responding is None:
            raise LocalProtocolError("Response body sent before the response head")
        if self._resp_no_body:
            out = b""
        elif self._resp_chunked:
            if n:
                out = _chunk(data, not more)
            else:
                out = b"" if more else LAST_CHUNK
        else:
            if self._resp_remaining >= 0:
                if n > self._resp_remaining:
                    raise LocalProtocolError(
                        f"Response body longer than its Content-Length ({n} more bytes than "
                        f"the {self._resp_remaining} still expected)"
                    )
                self._resp_remaining -= n
            out = data
        if not more:
            self._finish_response()
        return out

    def send_body_elsewhere(self, long long n):
        """End the response whose whole body, ``n`` bytes, the caller wrote itself (a file, by sendfile(2)):
        the bookkeeping of send_body without its bytes (hybrid/pathsend.py)."""
        if self._responding is None:
            raise LocalProtocolError("Response body sent before the response head")
        if not self._resp_no_body and self._resp_remaining >= 0:
            self._resp_remaining -= n
        self._finish_response()

    cpdef bytes send_trailers(self, fields, bint first, bint more):
        """End the body of a response whose app declared trailers (ASGI ``http.response.trailers``): the last
        chunk and the trailer section (RFC 9112 section 7.1.2), its fields only to a client that sent
        ``TE: trailers``; b"" when the response is not chunked. ``first``: the first trailers message; ``more``:
        more follow (the section ends with the last)."""
        if self._responding is None:
            raise LocalProtocolError("Trailers sent before the response head")
        lines = _trailer_fields(fields)  # (checked whether or not they go out: the app's error shows either way)
        out = b""
        if self._resp_chunked:
            out = (b"0\r\n" if first else b"") + (lines if self._responding.te_trailers else b"")
            if not more:
                out += b"\r\n"
        if not more:
            self._finish_response()
        return out

    def send_early_hint(self, links):
        """A 103 Early Hints response (RFC 8297) for the oldest unanswered request, before its final response;
        b"" for an HTTP/1.0 client (no 1xx to it, RFC 9110 section 15.2) or no links."""
        if self._responding is not None or not self._unanswered:
            raise LocalProtocolError("Early hints after the final response started")
        hints = _early_hints(links)
        return hints if (<Request>self._unanswered[0]).http_version == HTTP_11 else b""

    cdef _finish_response(self):
        if self._resp_remaining > 0 and not self._resp_no_body:
            # The body fell short of its Content-Length: the client cannot find the next response.
            self._resp_close = True
        if self._resp_close:
            self._closing = True
        self._responding = None

    def close_after_response(self):
        """Answer the current and later requests with ``connection: close`` (the server is shutting down)."""
        self._closing = True

    def send_error(self, int status, str reason):
        """A complete plain-text error response that closes the connection (for malformed requests)."""
        body = reason.encode("utf-8", "replace") + b"\n"
        out = [(_STATUS_LINES[status] if 100 <= status < 600 else None) or _STATUS_LINES[500],
               b"content-type: text/plain; charset=utf-8\r\n",
               b"content-length: %d\r\n" % len(body)]
        if self._server_header:
            out.append(SERVER_LINE)
        if self._date_header:
            out.append(_current_date_line())
        if self._extra_headers is not None:
            out.append(self._extra_headers)
        out.append(CLOSE_LINE)
        out.append(b"\r\n")
        out.append(body)
        self._closing = True
        return b"".join(out)

    @property
    def mid_response(self):
        """A response head went out and its body is not complete: closing now cuts it short."""
        return self._responding is not None
