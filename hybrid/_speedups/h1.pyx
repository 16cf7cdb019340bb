# cython: language_level=3
"""H1Protocol: a sans-I/O HTTP/1.1 server protocol over httptools (llhttp).

Bytes go in through ``feed()`` and come out as events: ``Request`` (the head), ``Data`` (body pieces) and
``EndOfMessage``. Responses go the other way: ``send_response()`` and ``send_body()`` return the bytes to write,
framed with Content-Length or chunked encoding as RFC 9112 asks. The object never touches a socket; the SyncWorker
and the AsyncPool do the I/O.

States, per connection:
- reading a request head (``_in_head``), then its body, then the next head (pipelining: several requests may be
  parsed from one buffer; their responses are written in order, oldest unanswered first);
- after a request that does not keep the connection alive (``Connection: close``, HTTP/1.0), later input is
  ignored: the client must not send more (RFC 9112 section 9.6), and it must not turn into an error;
- after malformed input the protocol is broken: every later ``feed()`` raises the same ``H1Error``; the events
  completed before the bad bytes ride on the first raise (``H1Error.events``), so earlier requests are answered;
- after a WebSocket upgrade the protocol has switched: it parses nothing more, and the bytes after the request head
  are in ``trailing_data`` (only when built with ``websocket=True``, by a server that performs the upgrade).

Upgrades: llhttp treats everything after the head of any ``Connection: Upgrade`` request as the new protocol and
skips its body. A server that does not perform the upgrade must keep HTTP framing exactly as without it (RFC 9110
section 7.8), or a body could be parsed as a second request (request smuggling). So a declined upgrade's body is
parsed by resuming a fresh parser with the same framing (``_resume_head``), and only a WebSocket upgrade the server
takes switches protocols.
"""

from http import HTTPStatus

from libc.string cimport memchr
from libc.stdio cimport snprintf
from libc.time cimport gmtime_r, time, time_t, tm

from hybrid._speedups.h1_bytes cimport (
    _chunk,
    _digits,
    _has_forbidden_byte,
    _has_token,
    _is_token,
    _length_line,
    _lower_is,
    _origin_form,
    _valid_host,
)
from hybrid._speedups.h1_ext cimport _early_hints, _trailer_fields
from hybrid._speedups.h1_te cimport _app_codings

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidMethodError,
    HttpParserInvalidURLError,
    HttpParserUpgrade,
    HttpRequestParser,
)


class H1Error(Exception):
    """Malformed or unacceptable input: answer ``status_code`` with ``reason`` and close the connection.

    ``events`` holds the events completed before the bad input (answer those first); it is empty when the error
    is raised again by a later ``feed()``.
    """

    def __init__(self, int status_code, str reason):
        super().__init__(f"{status_code} {reason}")
        self.status_code = status_code
        self.reason = reason
        self.events = []


class LocalProtocolError(Exception):
    """The application asked for a response that HTTP/1.1 cannot express (bad status, header or length)."""


cdef class Request:
    """A request head. ``path`` and ``query`` are the raw (still percent-encoded) parts of ``target``."""

    def __repr__(self):
        return f"<Request {self.method!r} {self.target!r} HTTP/{self.http_version}>"


cdef class Data:
    """A piece of a request body."""

    def __init__(self, bytes data):
        self.data = data

    def __repr__(self):
        return f"<Data {len(self.data)} bytes>"


cdef class EndOfMessage:
    """The request body (possibly empty) is complete."""

    def __repr__(self):
        return "<EndOfMessage>"


# One EndOfMessage serves every request: it carries no data.
cdef EndOfMessage END_OF_MESSAGE = EndOfMessage()

cdef str HTTP_11 = "1.1"
cdef str HTTP_10 = "1.0"

# Status lines are built once; the reason phrase is informational (RFC 9112 section 4).
cdef dict _STATUS_LINES = {}
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


cdef object _new_parser(H1Protocol proto):
    parser = HttpRequestParser(proto)
    # llhttp rejects HTTP/1.2 and later 1.x; RFC 9110 section 2.5 says serve them as 1.1. The version is checked
    # in on_headers_complete instead (anything but 1.x is 505).
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


cdef class H1Protocol:
    """One HTTP/1.1 server connection's protocol state. Build it with ``_create_h1_protocol()``."""

    def __cinit__(self):
        self._events = []
        self._unanswered = []
        self._parser = _new_parser(self)
        self._in_head = True
        self.trailing_data = b""

    # -- parsing -----------------------------------------------------------------------------------------

    cpdef list feed(self, data):
        """Parse ``data`` and return the list of events it completed (possibly empty).

        Raises ``H1Error`` on malformed input; the connection should be answered with its status and closed.
        """
        if self._error is not None:
            self._error.events = []
            raise self._error
        if self._switched:
            self.trailing_data += data
            return []
        if self._input_closed:
            return []  # after a request that closes the connection: ignored, never parsed (RFC 9112 section 9.6)
        self._progress = False
        cdef Py_ssize_t upgrade_at = -1
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            # llhttp stops after the head of a request that asks to switch protocols, skipping its body.
            upgrade_at = exc.args[0]
        except HttpParserCallbackError as exc:
            if isinstance(exc.__context__, H1Error):
                self._error = exc.__context__
            else:
                self._error = H1Error(400, str(exc) or "Malformed request")
            self._error.events = self._take_events()
            raise self._error from None
        except HttpParserError as exc:
            if self._input_closed:
                return self._take_events()  # bytes after a closing request: ignored, not an error
            self._raise_parser_error(exc, data)
        if upgrade_at >= 0:
            # (Handled here, not in the except clause: an H1Error raised while parsing what follows would get the
            # upgrade as its __context__ instead of reaching the handler above as the callback error's context.)
            if self._websocket and self._resume_head is None and self._upgrade is not None:
                self._switched = True  # the server takes this upgrade: the rest is WebSocket, not HTTP
                self.trailing_data = bytes(data[upgrade_at:])
                return self._take_events()
            # Declined (RFC 9110 section 7.8 lets a server ignore Upgrade): HTTP framing continues exactly as
            # without it. A fresh parser resumes the skipped body with the request's own framing, or parses
            # what follows as the next request.
            self._parser = _new_parser(self)
            if self._resume_head is not None:
                self._synthetic = True
                self._parser.feed_data(self._resume_head)
                self._synthetic = False
                self._resume_head = None
            else:
                self._in_head = True
            if upgrade_at < len(data):
                events = self._take_events()
                try:
                    events.extend(self.feed(data[upgrade_at:]))
                except H1Error as err:
                    err.events = events + err.events
                    raise
                return events
        if not self._progress:
            # httptools buffers a header (or trailer) field split across reads without calling us: bound the bytes
            # read since the last field it reported (complete fields are bounded in on_header). In a body, data
            # that gave no body byte is chunk framing or trailers: bounded the same way.
            self._stalled_bytes += len(data)
            if self._stalled_bytes > self._max_head:
                self._fail(431, "Request header fields too large" if self._in_head or not self._in_message
                           else "Request trailer section too large")
        return self._take_events()

    cpdef release(self):
        """The connection is closed for good: drop the parser, whose callbacks are this protocol's bound methods (a
        reference cycle, else freed only by a full garbage collection once the connection lived long). Nothing
        is parsed after this; responses can still be framed."""
        self._parser = None
        self._input_closed = True

    cdef list _take_events(self):
        events = self._events
        self._events = []
        return events

    cdef _raise_parser_error(self, exc, data):
        if isinstance(exc, HttpParserInvalidMethodError):
            # 501 for a well-formed method token the parser does not know; 400 for garbage.
            first = bytes(data[:32]).split(b" ", 1)
            # (Only when this buffer holds no earlier request: ``data`` starts at the failing request then.)
            if len(first) == 2 and _is_token(first[0]) and not self._events:
                self._fail(501, "Method not implemented")
            self._fail(400, "Malformed request line")
        if isinstance(exc, HttpParserInvalidURLError):
            self._fail(400, "Invalid request target")
        # (Versions are checked in on_headers_complete: llhttp's version errors here are malformed input, such as
        # a bare LF after the version, so 400, not 505.)
        self._fail(400, str(exc) or "Malformed request")

    cdef _fail(self, int status, str reason):
        self._error = H1Error(status, reason)
        self._error.events = self._take_events()
        raise self._error

    def on_message_begin(self):
        if self._synthetic:
            return  # resuming a declined upgrade's body: the request was already reported
        self._in_message = True
        self._in_head = True
        self._progress = True
        self._url_parts = []
        self._url_len = 0
        self._headers = []
        self._head_len = 0
        self._stalled_bytes = 0
        self._expect_continue = False
        self._wants_stream = False
        self._forwarded = False
        self._te_trailers = False
        self._upgrade = None
        self._body_len = 0
        self._host_count = 0
        self._bad_host = False
        self._content_length = -1
        self._chunked = False
        self._te_values = None
        self._te_padded = False

    def on_url(self, bytes url):
        if self._synthetic:
            return
        self._url_parts.append(url)
        self._url_len += len(url)
        if self._url_len > self._max_target:
            raise H1Error(414, "Request target too long")

    def on_header(self, bytes name, bytes value):
        if self._synthetic:
            return
        self._stalled_bytes = 0  # (httptools holds no partial field now)
        cdef Py_ssize_t n = len(name)
        cdef Py_ssize_t v = len(value)
        cdef bint padded = False
        cdef const char* raw = value
        name = name.lower()
        if v and (value[v - 1] == 32 or value[v - 1] == 9):
            value = value.rstrip(b" \t")  # trailing OWS is not part of the value (RFC 9112 section 5)
            # llhttp takes trailing SP after "chunked" for whitespace but not HTAB: the TE check must know.
            padded = memchr(raw + len(value), 9, v - len(value)) != NULL
        self._head_len += n + len(value) + 4
        if self._head_len + self._url_len > self._max_head:
            raise H1Error(431, "Request header fields too large")
        if not self._in_head:
            # A trailer field (RFC 9112 section 7.1.2): counted against the same bound as the head, never merged
            # into the request's header fields (RFC 9110 section 6.5.1), which the app may already hold.
            return
        if len(self._headers) >= self._max_headers:
            raise H1Error(431, "Too many request header fields")
        if n == 6 and name == b"expect":
            if value.lower() == b"100-continue":
                self._expect_continue = True
        elif n == 6 and name == b"accept":
            # (find, not `in`: on 3.11 `bytes in bytes` first tries the needle as an int and formats the
            # TypeError it clears, about 2,000 instructions on every request)
            if value.find(b"text/event-stream") >= 0:
                self._wants_stream = True  # SSE: the server serves it from its async pool
        elif n == 7 and name == b"upgrade":
            self._upgrade = value
        elif n == 4 and name == b"host":
            self._host_count += 1
            if not _valid_host(value):
                self._bad_host = True
        elif n == 14 and name == b"content-length":
            # (llhttp has checked the digits and rejects a second Content-Length.) Every length counts: a long
            # one taken for "no body" would let a declined upgrade's body be parsed as a request.
            if not value.isdigit():
                raise H1Error(400, "Invalid Content-Length")
            length = int(value)
            if length > 0x7FFFFFFFFFFFFFFF:
                raise H1Error(413, "Request body too large")
            self._content_length = length
        elif n == 17 and name == b"transfer-encoding":
            self._chunked = True  # checked in _check_transfer_coding once the head is complete
            self._te_padded = self._te_padded or padded  # a trailing HTAB
            self._te_values = value if self._te_values is None else self._te_values + b"," + value
        elif n == 2 and name == b"te":
            self._te_trailers = self._te_trailers or _has_token(value, b"trailers")  # (RFC 9110 section 10.1.4)
        elif (n == 9 and name == b"forwarded") or (15 <= n <= 17 and name.startswith(b"x-forwarded-")):
            self._forwarded = True  # a trusted proxy's report: only then does the server look (proxy_headers.py)
        self._headers.append((name, value))

    def on_headers_complete(self):
        if self._synthetic:
            return
        cdef Request req = Request.__new__(Request)
        parser = self._parser
        version = parser.get_http_version()
        if version == HTTP_11 or (version[:2] == "1." and version != HTTP_10):
            # HTTP/1.2 and later 1.x are served as 1.1, the highest minor version we implement (RFC 9110 2.5).
            req.http_version = HTTP_11
            if self._host_count != 1:
                # RFC 9112 section 3.2: exactly one Host in an HTTP/1.1 request, else 400.
                raise H1Error(400, "Missing Host header" if self._host_count == 0 else "More than one Host header")
        elif version == HTTP_10:
            req.http_version = HTTP_10
        else:
            raise H1Error(505, "HTTP version not supported")
        if self._bad_host:
            raise H1Error(400, "Invalid Host header")  # RFC 9112 section 3.2, RFC 3986 section 3.2.2
        if self._chunked:
            self._check_transfer_coding(req.http_version)
        method = parser.get_method()
        if method == b"CONNECT":
            raise H1Error(501, "CONNECT is not supported")
        target = b"".join(self._url_parts) if len(self._url_parts) != 1 else self._url_parts[0]
        if target == b"*" and method != b"OPTIONS":
            raise H1Error(400, "The asterisk-form target is only for OPTIONS")  # RFC 9112 section 3.2.4
        req.method = method
        req.target = target
        if target[:1] != b"/" and target.find(b"://") >= 0:
            target = _origin_form(target)
        q = target.find(b"?")
        if q >= 0:
            req.path = target[:q]
            req.query = target[q + 1:]
        else:
            req.path = target
            req.query = b""
        req.headers = self._headers
        if self._max_body >= 0 and self._content_length > self._max_body:
            raise H1Error(413, "Request body too large")  # refused before a byte of it is read
        req.keep_alive = parser.should_keep_alive()
        self._last_keep_alive = req.keep_alive
        # 1xx responses must not be sent to HTTP/1.0 clients (RFC 9110 section 15.2).
        req.expect_continue = self._expect_continue and req.http_version == HTTP_11
        req.wants_stream = self._wants_stream
        req.forwarded = self._forwarded
        req.te_trailers = self._te_trailers and req.http_version == HTTP_11
        has_body = self._chunked or self._content_length > 0
        req.upgrade = None
        self._resume_head = None
        if parser.should_upgrade():
            if (self._websocket and not has_body and method == b"GET"
                    and self._upgrade is not None and _has_token(self._upgrade, b"websocket")):
                req.upgrade = self._upgrade  # the server will switch protocols after this head
            else:
                self._upgrade = None
                if has_body:
                    # llhttp will skip this body as "the new protocol": parse it ourselves (see feed()).
                    # (With the request's own persistence too: after a request that closes, nothing more is parsed.)
                    self._resume_head = (
                        b"PUT / HTTP/1.1\r\n"
                        + (b"transfer-encoding: chunked\r\n" if self._chunked
                           else b"content-length: %d\r\n" % self._content_length)
                        + (b"\r\n" if req.keep_alive else b"connection: close\r\n\r\n"))
        self._in_head = False
        self._progress = True
        self._unanswered.append(req)
        self._events.append(req)

    cdef _check_transfer_coding(self, str http_version):
        # Decided here, before the request is reported: a request the app saw must not fail on its framing after.
        cdef list codings
        if http_version == HTTP_10:
            # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            raise H1Error(400, "Transfer-Encoding in an HTTP/1.0 request")
        if self._content_length != -1:
            # RFC 9112 section 6.1 lets a server reject or let Transfer-Encoding win and close after; we reject.
            raise H1Error(400, "Content-Length together with Transfer-Encoding")
        codings = [c.strip(b" \t").lower() for c in self._te_values.split(b",")]
        if codings[len(codings) - 1] != b"chunked" or self._te_padded:  # (no wraparound: no [-1])
            # RFC 9112 section 6.3: a request whose final coding is not chunked has no reliable length.
            # (A trailing HTAB too: llhttp would not take the value for chunked.)
            raise H1Error(400, "Transfer-Encoding must end in chunked")
        codings = [c for c in codings if c]  # empty list elements are allowed (RFC 9110 section 5.6.1)
        if codings.count(b"chunked") > 1:
            raise H1Error(400, "Chunked applied more than once")  # RFC 9112 section 7.1
        if len(codings) > 1:
            # RFC 9112 section 6.1: a coding the server does not understand (we decode chunked only) is 501.
            raise H1Error(501, "Transfer coding not implemented")

    def on_body(self, bytes body):
        self._progress = True
        self._stalled_bytes = 0
        self._body_len += len(body)
        if self._max_body >= 0 and self._body_len > self._max_body:
            raise H1Error(413, "Request body too large")
        self._events.append(Data(body))

    def on_message_complete(self):
        if self._resume_head is not None:
            return  # llhttp skipped a declined upgrade's body: the message ends after the resumed body
        if not self._last_keep_alive:
            self._input_closed = True
        self._in_message = False
        self._stalled_bytes = 0
        self._progress = True
        self._events.append(END_OF_MESSAGE)

    # -- responses -----------------------------------------------------------------------------------------

    def send_continue(self):
        """The interim ``100 Continue`` response (RFC 9110 section 10.1.1)."""
        return CONTINUE_RESPONSE

    cpdef bytes send_response(self, int status, headers, long long content_length=-1):
        """Return the head of the response to the oldest unanswered request.

        ``content_length`` >= 0 means the caller already holds the whole body of that size: a Content-Length
        header is added unless the application sent framing headers itself. Otherwise the body is chunked
        (HTTP/1.1) or delimited by closing the connection (HTTP/1.0).
        """
        cdef Request req
        cdef list out
        cdef bytes name, value
        cdef Py_ssize_t n
        cdef bint has_length = False, has_server = False, has_date = False, has_close = False
        cdef list te_values = None
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
        line = _STATUS_LINES.get(status)
        if line is None:
            line = f"HTTP/1.1 {status} \r\n".encode("latin-1")
        out = [line]
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
            out.append(name)
            out.append(b": ")
            out.append(value)
            out.append(b"\r\n")
        if te_values is not None:
            self._app_transfer_coding(req, status, te_values, has_length, out)
        elif not has_length and status != 204 and status != 304:
            if self._resp_no_body and content_length <= 0:
                # HEAD whose app sent no body: say nothing rather than a length of 0 that GET's body need not
                # have (RFC 9110 sections 8.6, 9.3.2). A body it did send is the GET's: its length is true.
                pass
            elif content_length >= 0:
                out.append(_length_line(content_length))
                self._resp_remaining = content_length
            elif req.http_version == HTTP_11:
                out.append(CHUNKED_LINE)
                self._resp_chunked = True
            else:
                self._resp_close = True
        if self._server_header and not has_server:
            out.append(SERVER_LINE)
        if self._date_header and not has_date:
            out.append(_current_date_line())
        if self._extra_headers is not None:
            out.append(self._extra_headers)
        if self._resp_close and not has_close:
            out.append(CLOSE_LINE)
        elif req.http_version == HTTP_10:
            out.append(KEEP_ALIVE_LINE)
        out.append(b"\r\n")
        self._unanswered.pop(0)
        self._responding = req
        return b"".join(out)

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
        out = [_STATUS_LINES.get(status) or _STATUS_LINES[500],
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
    def keep_alive(self):
        """Whether the connection may carry another request once the current response is complete."""
        return not self._closing and self._error is None and (
            self._responding is None or not self._resp_close
        )

    @property
    def mid_response(self):
        """A response head went out and its body is not complete: closing now cuts it short."""
        return self._responding is not None

    @property
    def head_in_progress(self):
        """Part of a request head has arrived, but not all of it (a slow or stalled client)."""
        return self._in_message and self._in_head and self._error is None



def _create_h1_protocol(*, max_incomplete_event_size=None, max_target_size=8192, max_header_count=100,
                        max_body_size=None, server_header=True, date_header=True, websocket=False,
                        extra_headers=None):
    """Build an ``H1Protocol``.

    ``max_incomplete_event_size`` bounds a request head (request line plus header fields, default 16 KiB:
    431 past it); ``max_target_size`` bounds the request target (414); ``max_body_size`` bounds a request body
    (413; default unlimited, the app reads the body in pieces). ``websocket`` says the server performs
    WebSocket upgrades: such a request switches the protocol (see ``trailing_data``); every other upgrade is
    declined and framing continues as HTTP.
    """
    cdef H1Protocol proto = H1Protocol()
    proto._max_head = 16384 if max_incomplete_event_size is None else max_incomplete_event_size
    proto._max_target = max_target_size
    proto._max_headers = max_header_count
    proto._max_body = -1 if max_body_size is None else max_body_size
    proto._server_header = server_header
    proto._date_header = date_header
    proto._websocket = websocket
    proto._extra_headers = extra_headers  # (--header: lines written as they are into every response head)
    if proto._max_head <= 0 or proto._max_target <= 0 or proto._max_headers <= 0:
        raise ValueError("H1Protocol limits must be positive")
    return proto
