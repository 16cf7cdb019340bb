# cython: language_level=3
"""H1Protocol: a sans-I/O HTTP/1.1 server protocol over httptools (llhttp). This module is its parsing half;
the responses are its base class's (H1Response, h1_response.pyx), the events are h1_events.pyx's.

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

from libc.string cimport memchr, memcmp

from hybrid._speedups.h1_bytes cimport _has_token, _is_token, _origin_form, _valid_host

from hybrid._speedups import h1_events as _events
from hybrid._speedups.h1_response import CONTINUE_RESPONSE, LocalProtocolError  # (this module's names too)

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


# One EndOfMessage serves every request: it carries no data.
cdef EndOfMessage END_OF_MESSAGE = EndOfMessage()

cdef str HTTP_11 = "1.1"
cdef str HTTP_10 = "1.0"

cdef inline str _fast_version(bytes data):
    # The version of the request whose line starts ``data``, read from its end (" HTTP/1.1" CRLF) when it is one
    # of the two usual ones; None: ask the parser. llhttp ends a request line at its first LF and takes no bare
    # LF there, so the bytes before the first LF are that line.
    if data is None:
        return None
    cdef const char* p = data
    cdef const char* lf = <const char*>memchr(p, 10, len(data))
    if lf == NULL or lf - p < 11 or (lf - 1)[0] != 13 or memcmp(lf - 10, b" HTTP/1.", 8) != 0:
        return None
    # " HTTP/1.x" is the version only after a method and a target ("method SP target SP version"): in
    # "CONNECT HTTP/1.1" it is the target, and llhttp reads no version there (the fuzzer found 400 vs 505).
    if (lf - 11)[0] == 32 or memchr(p, 32, (lf - 11) - p) == NULL:
        return None
    if (lf - 2)[0] == 49:  # "1"
        return HTTP_11
    if (lf - 2)[0] == 48:  # "0"
        return HTTP_10
    return None


cdef object _new_parser(H1Protocol proto):
    parser = HttpRequestParser(proto)
    # llhttp rejects HTTP/1.2 and later 1.x; RFC 9110 section 2.5 says serve them as 1.1. The version is checked
    # in on_headers_complete instead (anything but 1.x is 505).
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


cdef class H1Protocol(H1Response):
    """One HTTP/1.1 server connection's protocol state. Build it with ``_create_h1_protocol()``."""

    def __cinit__(self):
        self._events = []
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
        # A head that starts this buffer has its request line at its start (_fast_version).
        self._head_data = data if not self._in_message and type(data) is bytes else None
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
        version = _fast_version(self._head_data)
        self._head_data = None  # (a second head in the same buffer does not start it)
        if version is None:
            version = parser.get_http_version()  # (formats a new string: ~2k instructions)
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
        if self._upgrade is not None and parser.should_upgrade():  # (llhttp upgrades only with an Upgrade field;
            # CONNECT was refused above)
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

    @property
    def keep_alive(self):
        """Whether the connection may carry another request once the current response is complete."""
        return not self._closing and self._error is None and (
            self._responding is None or not self._resp_close
        )

    @property
    def head_in_progress(self):
        """Part of a request head has arrived, but not all of it (a slow or stalled client)."""
        return self._in_message and self._in_head and self._error is None



# The events by their Python names too (``from hybrid._speedups.h1 import Request``); C code cimports them.
globals().update(Request=_events.Request, Data=_events.Data, EndOfMessage=_events.EndOfMessage)


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
