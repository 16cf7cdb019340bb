# cython: language_level=3
"""ASGI HTTP for one request: the scope, ``receive`` and ``send`` (ASGI HTTP spec 2.4), compiled.

A RequestCycle lives as long as one request/response exchange on a Connection (hybrid/connection.py). It never
touches the socket itself except through the connection's ``send_now``, ``read_now`` and ``want_read``, so
the connection stays the single owner of its I/O. ``hybrid/asgi/http.py`` names these for the Python layer.

Compiled because it runs for every request, twice per response (start, body): typed flags and counters instead
of instance dicts, and the framing calls go straight to the H1Protocol.
"""

from time import perf_counter
from urllib.parse import unquote

from hybrid._speedups.h1 cimport H1Protocol, Request
from cpython.dict cimport PyDict_Copy, PyDict_SetItem
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member

from hybrid.request_id import REQUEST_ID_KEY, LazyRequestId
from hybrid.tls_info import tls_extension

PATHSEND = "http.response.pathsend"
# hybrid.pathsend.send_path, imported on the first file (pathsend imports this module): an import statement in
# send() ran the import machinery for every file sent.
cdef object _send_path = None


cdef object _import_send_path():
    global _send_path
    from hybrid.pathsend import send_path
    _send_path = send_path
    return send_path

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
# ASGI extensions a scope may name (docs/extensions.md); their parameters: none.
EARLY_HINT = "http.response.early_hint"
TRAILERS = "http.response.trailers"
cdef dict _NO_PARAMS = {}
cdef str HTTP = "http"  # (Connection.scheme's "http" is the same interned object: an identity test first)
DISCONNECT = {"type": "http.disconnect"}

# Decoded method names, shared: most requests use one of these.
cdef dict _METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")}

# Past this much unread body the connection stops reading from the socket until the app catches up.
BODY_HIGH_WATER = 1 << 20
cdef Py_ssize_t _BODY_HIGH_WATER = BODY_HIGH_WATER
# A first body chunk with more_body=True waits this long (in a worker) for the next message before it is written:
# a last message meanwhile makes one Content-Length response of it, a second chunk a stream (see send).
HOLD_FIRST_CHUNK = 0.01


class ClientDisconnected(OSError):
    """The client went away; raised by ``send`` when the response can no longer be delivered."""


cdef dict _tls_scope(conn):
    # The tls extension's per-scope copy in C (hybrid/tls_info.py works it out once per connection and keeps it
    # on the SSLSocket): the Python call, its ** merge and list() were 1.7k more instructions per HTTPS request.
    info = conn.sock.__dict__.get("_hybrid_tls_info")
    if type(info) is not dict:
        return tls_extension(conn)  # (the connection's first request: work it out)
    cdef dict ext = (<dict>info).copy()
    ext["client_cert_chain"] = list(ext["client_cert_chain"])  # (fresh per scope: an app may change it)
    return ext


def build_scope(conn, Request req, str root_path, dict state, request_id=None):
    """The ``http`` scope. The request id is ``request_id`` if given, else worked out from the headers when
    something first reads it (request_id.py)."""
    return scope_from(scope_template(conn, root_path), conn, req, state, conn.server.request_ids, request_id)


cpdef dict scope_template(conn, str root_path):
    """A scope's entries that are the same for every request of ``conn``, in the scope's order, the others None.
    A Connection makes it once and copies it per request (``scope_from``): one ``PyDict_Copy`` and eight stores
    instead of a fourteen-entry dict and the connection's attributes read per request."""
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": None,
        "server": conn.server_addr,
        "client": conn.client_addr,
        "scheme": conn.scheme,
        "method": None,
        "root_path": root_path,
        "path": None,
        "raw_path": None,
        "query_string": None,
        "headers": None,
        "state": None,
        "extensions": None,
    }


cpdef dict scope_from(dict template, conn, Request req, dict state, ids, request_id):
    """The ``http`` scope of ``req``: a fresh top-level dict (apps mutate it), copied from ``conn``'s
    ``scope_template``; the per-request entries (and the extensions dict) new each time. ``ids``: the server's
    RequestIds, for a request id worked out from the headers (``request_id`` None)."""
    cdef bytes raw_path = req.path
    cdef str path = raw_path.decode("latin-1")
    if path.find("%") >= 0:
        path = unquote(path, encoding="utf-8", errors="surrogateescape")
    method = _METHODS.get(req.method)
    if method is None:
        method = req.method.decode("ascii")
    cdef dict scope = PyDict_Copy(template)
    scheme = scope["scheme"]
    cdef str root_path = scope["root_path"]
    rid = _lazy_id(ids, req.headers) if request_id is None else {"id": request_id}
    # Each extension only where it is honoured (docs/extensions.md): no 1xx to HTTP/1.0, trailers only where the
    # client takes them; pathsend on every HTTP connection (hybrid/pathsend.py). (Built in one literal: a later insert cost a lookup on every request.)
    cdef dict extensions
    if req.http_version == "1.1":
        extensions = {REQUEST_ID_KEY: rid, PATHSEND: _NO_PARAMS, EARLY_HINT: _NO_PARAMS}
        if req.te_trailers:
            extensions[TRAILERS] = _NO_PARAMS
    else:
        extensions = {REQUEST_ID_KEY: rid, PATHSEND: _NO_PARAMS}
    if scheme is not HTTP and scheme == "https" and conn.sock is not None:  # (None: a handoff's scope for its request id only)
        extensions["tls"] = _tls_scope(conn)
    # (Stores into keys the copy has: the scope's order stays the template's.)
    PyDict_SetItem(scope, "http_version", req.http_version)
    PyDict_SetItem(scope, "method", method)
    PyDict_SetItem(scope, "path", root_path + path if root_path else path)
    PyDict_SetItem(scope, "raw_path", root_path.encode() + raw_path if root_path else raw_path)
    PyDict_SetItem(scope, "query_string", req.query)
    PyDict_SetItem(scope, "headers", req.headers)
    PyDict_SetItem(scope, "state", PyDict_Copy(state))  # (state.copy() went through an unbound-method call: ~0.7k instructions)
    PyDict_SetItem(scope, "extensions", extensions)
    if req.forwarded and conn.proxy is not None:
        conn.proxy.apply(scope)
    return scope


# Where LazyRequestId's two slots live in the object: a new one's are stored there directly (through setattr each
# store was a type lookup and a descriptor call), and it is made by dict's tp_new (``dict.__new__`` was a method
# call by name).
assert LazyRequestId.__slots__ == ("_ids", "_headers")
cdef Py_ssize_t _IDS_OFFSET = (<PyMemberDescrObject*><PyObject*>LazyRequestId.__dict__["_ids"]).d_member.offset
cdef Py_ssize_t _HEADERS_OFFSET = (<PyMemberDescrObject*><PyObject*>LazyRequestId.__dict__["_headers"]).d_member.offset
cdef type _LAZY = LazyRequestId
cdef PyTypeObject* _LAZY_TYPE = <PyTypeObject*>LazyRequestId
cdef tuple _NO_ARGS = ()


cdef object _lazy_id(ids, headers):
    # request_id.lazy_request_id, built without a Python-level call (every request has one)
    value = _LAZY_TYPE.tp_new(_LAZY, <PyObject*>_NO_ARGS, NULL)
    PyDict_SetItem(value, "id", None)  # (dict's own storage: the class's __setitem__ would fill it now)
    # (a new object's slots are NULL: nothing to release)
    Py_INCREF(ids)
    (<PyObject**>((<char*><PyObject*>value) + _IDS_OFFSET))[0] = <PyObject*>ids
    Py_INCREF(headers)
    (<PyObject**>((<char*><PyObject*>value) + _HEADERS_OFFSET))[0] = <PyObject*>headers
    return value


async def _finish_flush(conn, rest):
    try:
        await conn.finish_write(rest)
    except ClientDisconnected:
        pass  # (the connection knows: the app's next send raises)


cdef Py_ssize_t _unsent_body(Py_ssize_t left, bytes last, Py_ssize_t body_len):
    """How many of a message's ``body_len`` body bytes are among the ``left`` bytes not written at the end of its
    framed bytes (``last`` ends with them): the chunked framing after the body (CRLF, then the last chunk) is
    not body."""
    cdef Py_ssize_t tail = 0
    if len(last) == body_len:  # the body itself (Content-Length framing)
        pass
    elif body_len and last.endswith(b"\r\n0\r\n\r\n"):
        tail = 7
    elif body_len and last.endswith(b"\r\n"):
        tail = 2
    return max(0, min(left - tail, body_len))


cdef class RequestCycle:
    """One request/response exchange: fed body bytes by its connection, read and answered by the app."""

    # (attributes: cycle.pxd)

    def __init__(self, conn, Request request, dict scope):
        self.conn = conn
        self.request = request
        self.scope = scope
        self.body = []
        self.continue_pending = request.expect_continue
        # wrote: some response bytes went to the socket (a framed head alone is not enough)
        # admitted: counted by a worker against --limit-concurrency (the pool counts its own)
        # sent: response body bytes the app sent (the access log's "bytes"; less what a cut-off write lost)
        # writing: the kernel has not taken all of a message yet (_finish_write)
        self.started = perf_counter()  # (the access log's "duration_ms")
        # held: a first body chunk sent with more_body=True, not written yet (see send); hold_timer its timer
        # flushing: a task writing what the kernel did not take of a flushed held chunk
        # stream_known: a second more_body=True message came: a real stream, the route is learned
        # received: request body bytes that arrived (--timeout-request-body's minimum rate)
        # body_since: when the app first waited for body bytes

    # -- fed by the connection ----------------------------------------------------------------------------

    cpdef add_body(self, bytes data):
        self.body.append(data)
        self.body_size += len(data)
        self.received += len(data)
        self.wake()

    cpdef end_body(self):
        self.body_complete = True
        self.wake()

    cpdef fail_body(self):
        """The body cannot complete (malformed, or over --limit-request-body): what is buffered is dropped, and
        receive() answers http.disconnect rather than pass a truncated body off as a whole one."""
        self.body.clear()
        self.body_size = 0
        self.body_complete = True
        self.request_delivered = True
        self.wake()

    cpdef wake(self):
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def wants_body(self):
        return not self.body_complete and self.body_size < _BODY_HIGH_WATER

    # -- receive ------------------------------------------------------------------------------------------

    async def receive(self):
        while True:
            if self.body or (self.body_complete and not self.request_delivered):
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body.clear()
                self.body_size = 0
                self.request_delivered = self.body_complete
                return {"type": "http.request", "body": body, "more_body": not self.body_complete}
            conn = self.conn
            if conn.disconnected or self.response_complete:
                return DISCONNECT
            if not self.body_complete:
                if self.continue_pending:
                    # RFC 9110 section 10.1.1: the client waits for this before sending the body; send it only
                    # now that the app asked for the body (an app that answers without reading never gets it).
                    self.continue_pending = False
                    if not self.head_sent:
                        await self._write_interim(conn.proto.send_continue())
                # Bytes may already be waiting in the socket buffer: read them without a trip through the loop.
                if conn.read_now():
                    continue
            await self._wait()

    async def _wait(self):
        self.waiter = self.conn.loop.create_future()
        self.conn.want_read()
        try:
            await self.waiter
        finally:
            self.waiter = None

    # -- send ---------------------------------------------------------------------------------------------

    cdef _start_response(self, dict message):
        if self.response_started:
            raise RuntimeError("ASGI: 'http.response.start' sent twice")
        status = message["status"]
        if type(status) is not int or not 200 <= status <= 999:
            raise ValueError(f"ASGI: invalid response status {status!r}: must be an int from 200 to 999")
        headers = message.get("headers", ())
        conn = self.conn
        server = conn.server
        echo = server.request_ids.echo
        if echo is not None and not any(name.lower() == echo for name, _ in headers):
            # --request-id-header: the response carries the request's id (unless the app set it itself)
            headers = [*headers, (echo, self.scope["extensions"][REQUEST_ID_KEY]["id"].encode("latin-1"))]
        self.status = status
        self.headers = headers
        self.response_started = True
        if message.get("trailers", False):
            # ASGI http.response.trailers: the body's last message does not end the response, the trailers do;
            # chunked even when the whole body comes at once, where the client said it takes them (TE).
            self.trailers = True
        if server.draining or (self.continue_pending and not self.body_complete):  # (Connection.draining, inline)
            # Draining; or the client still waits for 100 Continue and may never send the body: the
            # connection cannot tell where the next request starts, so it closes after this response.
            conn.proto.close_after_response()

    async def send(self, dict message):
        kind = message["type"]
        if kind != "http.response.body":
            if kind == "http.response.start":
                self._start_response(message)
                return
            if kind == PATHSEND:  # the body is a file (ASGI extension): sent by sendfile(2), see pathsend.py
                await (_send_path or _import_send_path())(self, message)
                return
            if kind == "http.response.trailers":
                await self._send_trailers(message)
                return
            if kind == "http.response.early_hint":
                await self._send_early_hint(message)
                return
            raise RuntimeError(f"ASGI: unexpected message type {kind!r} for an HTTP connection")
        if not self.response_started:
            raise RuntimeError("ASGI: 'http.response.body' sent before 'http.response.start'")
        if self.response_complete or self.body_ended:
            raise RuntimeError("ASGI: 'http.response.body' sent after the response was complete")
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError(f"ASGI: 'body' must be bytes, got {type(body).__name__}")
            body = bytes(body)
        cdef bint more = message.get("more_body", False)
        # framed as "more" when trailers are still to come: the trailers message ends the response
        cdef bint frame_more = more or self.trailers
        if frame_more and not more:
            self.body_ended = True  # (only the trailers may follow)
        self.sent += len(body)
        conn = self.conn
        cdef H1Protocol proto = conn.proto
        if self.flushing is not None:  # the rest of a held chunk flushed by the timer goes first
            await self.flushing  # (kept until done: the connection cancels it if the app ends meanwhile)
            self.flushing = None
        if not self.head_sent:
            held = self.held
            if held is not None:  # the message after a held first chunk (see below)
                self.held = None
                self.hold_timer.cancel()
                self.hold_timer = None
            if held is not None and more:
                # A second chunk: a streamed response. The connection learns the route (the next request of
                # it goes to the async pool); this one streams from here to its end.
                self.stream_known = True
                conn.streaming_started(self)
                out = proto.send_response(self.status, self.headers, -1)
                self.head_sent = True
                out = [out, proto.send_body(held, True), proto.send_body(body, True)]  # chunks as sent
            elif held is None and more and conn.HOLD_FIRST_CHUNK:
                # Not a stream yet: one chunk with more_body=True and an empty last message is how many
                # single-body responses are sent (Starlette's BaseHTTPMiddleware sends every response so).
                # Held until the next message, or HOLD_FIRST_CHUNK seconds (then _flush_held writes it).
                self.held = body
                self.hold_timer = conn.loop.call_later(HOLD_FIRST_CHUNK, self._flush_held)
                return
            else:
                if held is not None:
                    body = held + body if body else held  # one body after all
                # The whole body known at once: frame it with Content-Length; otherwise chunked (and for the
                # trailers of a client that takes them).
                if not frame_more and len(body) < 65536:  # (the usual response: head and body in one bytes)
                    out = proto.send_response(self.status, self.headers, len(body), body)
                else:
                    out = proto.send_response(self.status, self.headers,
                                              -1 if more or (self.trailers and self.request.te_trailers) else len(body))
                    out = (out + proto.send_body(body, frame_more) if len(body) < 65536
                           else [out, proto.send_body(body, frame_more)])
                self.head_sent = True
        else:
            if more and not self.stream_known:  # a second more_body=True message: a real stream
                self.stream_known = True
                conn.streaming_started(self)  # (the head went out: it only learns the route)
            out = proto.send_body(body, frame_more)
        if not frame_more:
            self.response_complete = True
            self.wake()
        if out:
            if conn.disconnected:
                self.sent -= len(body)  # (never written: the access log counts what was sent)
                raise ClientDisconnected("Client disconnected")
            self.wrote = True
            rest = conn.send_now(out) if frame_more else conn.send_last(out)
            if rest is not None:  # the client reads slower than we send: wait (backpressure)
                await self._finish_write(rest, out, len(body))
        if not frame_more and self.task is not None:
            conn.response_complete(self)  # (a pending task: the connection need not wait for its end)

    async def _send_trailers(self, dict message):
        """ASGI http.response.trailers: after the last body message of a response that declared them."""
        if not self.trailers:
            raise RuntimeError("ASGI: 'http.response.trailers' sent without 'trailers': True in the response start")
        if self.response_complete:
            raise RuntimeError("ASGI: 'http.response.trailers' sent after the response was complete")
        if not self.body_ended:
            raise RuntimeError("ASGI: 'http.response.trailers' sent before the last 'http.response.body'")
        cdef bint more = message.get("more_trailers", False)
        conn = self.conn
        cdef H1Protocol proto = conn.proto
        if self.flushing is not None:
            await self.flushing
            self.flushing = None
        out = proto.send_trailers(message.get("headers", ()), not self.trailers_sent, more)
        self.trailers_sent = True
        if not more:
            self.response_complete = True
            self.wake()
        if out:
            if conn.disconnected:
                raise ClientDisconnected("Client disconnected")
            self.wrote = True
            rest = conn.send_now(out)
            if rest is not None:
                await self._finish_write(rest, out, 0)
        if not more and self.task is not None:
            conn.response_complete(self)

    async def _send_early_hint(self, dict message):
        """ASGI http.response.early_hint: a 103 before the final response (RFC 8297); none to HTTP/1.0."""
        if self.response_started:
            raise RuntimeError("ASGI: 'http.response.early_hint' sent after 'http.response.start'")
        hints = (<H1Protocol>self.conn.proto).send_early_hint(message.get("links", ()))
        if hints:
            await self._write_interim(hints)

    async def _finish_write(self, rest, out, Py_ssize_t body_len):
        """Wait while the kernel takes ``rest``, the end of ``out`` (a message of ``body_len`` body bytes).
        Until its last byte is written the connection is busy even if the response is complete (``writing``:
        Connection._start does not release it, so no pipelined response starts inside this one and no idle
        sweep closes it). Cut off (--timeout-write-stall, the client gone), ``sent`` keeps only the body bytes
        the kernel took, which the access log then reports."""
        self.writing = True
        try:
            await self.conn.finish_write(rest)
        except ClientDisconnected as exc:
            left = getattr(exc, "unsent", None)
            if left is not None:
                self.sent -= _unsent_body(left, out[len(out) - 1] if type(out) is list else out, body_len)
            raise
        finally:
            self.writing = False

    def _flush_held(self):
        """HOLD_FIRST_CHUNK passed and the app sent nothing after its first more_body=True chunk: a stream after
        all (its route is learned only if a second chunk comes). The head and the chunk go out now. Also called
        when the app ends with a chunk held (it failed mid-response): the client gets what the app sent."""
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        body = self.held
        conn = self.conn
        if body is None or conn.cycle is not self or conn.sock is None or conn.disconnected:
            return
        self.held = None
        proto = conn.proto
        out = proto.send_response(self.status, self.headers, -1)
        self.head_sent = True
        out = out + proto.send_body(body, True) if len(body) < 65536 else [out, proto.send_body(body, True)]
        self.wrote = True
        try:
            rest = conn.send_now(out)
        except ClientDisconnected:
            return
        if rest is not None:
            self.flushing = conn.loop.create_task(_finish_flush(conn, rest))

    async def _write_interim(self, data):
        """An interim response (100 Continue): sent, but it is not the response (``wrote`` stays False)."""
        conn = self.conn
        if conn.disconnected:
            raise ClientDisconnected("Client disconnected")
        rest = conn.send_now(data)
        if rest is not None:
            await conn.finish_write(rest)
