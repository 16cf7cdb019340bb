# cython: language_level=3
"""One client connection (HTTP/1.1): reading, parsing, running the app, writing. Compiled.

Follow one request (the thread that owns the connection's epoll set is a SyncWorker, hybrid/sync_worker.py; the
set itself is a ConnectionSet, hybrid/connection.py):
1. The connection becomes readable; the set's owner calls ``Connection.on_readable``: one ``recv``, the bytes go
   to the connection's H1Protocol, which returns request events.
2. ``Connection._start`` builds the ASGI scope and runs the app as a RequestTask whose first step runs at once, in
   this thread, on this thread's own event loop. A plain request finishes inside that first step: ``send`` wrote the
   head and body with one ``send`` call and the connection simply stays in the set for its next request.
3. If the app awaits something that is not ready (a slow body, a database, ``asyncio.sleep``) the task is pending:
   this thread's loop serves the connection until the response is done (``Connection._go_async``); it stays in
   its set, marked, and leaves it only if the set reports it readable meanwhile.
4. A stream or a WebSocket upgrade is handed to the async pool instead (``_hand_off``, hybrid/async_pool.py).

Ownership: a connection belongs to exactly one of: an epoll set (idle or waiting for bytes), the thread serving
it, or the async pool. Nobody else touches its socket.

Compiled because this runs for every request: typed state instead of instance attributes, and direct calls into
the H1Protocol and the RequestCycle. The async pool's connections subclass it (StreamConnection, compiled, over
connection.pxd; then PoolConnection and ``--mode async``'s AsyncConnection in Python), and so does TLS
(TLSConnection); they override the I/O methods, so those stay ``cpdef``/``def``.
"""

import asyncio
import logging
import os
import socket
import ssl
import time
from collections import deque

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno

from hybrid._speedups.accesslog cimport log_access
from hybrid.h2.handoff import hand_off as hand_off_h2, is_h2c_preface
from hybrid._speedups.cycle cimport RequestCycle, scope_from, scope_template
from hybrid._speedups.h1 cimport Data, H1Protocol, Request
from hybrid._speedups.held cimport send_held_first, send_resumed
from hybrid._speedups.monitor cimport mark_enter, mark_leave
from hybrid._speedups.tls_io cimport ssl_object, tls_recv, tls_send


cdef extern from "<sys/epoll.h>" nogil:
    int EPOLL_CTL_DEL
    int _epoll_ctl "epoll_ctl" (int epfd, int op, int fd, void *event)

cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_recv "recv" (int fd, void *buf, size_t n, int flags)
    ssize_t c_send "send" (int fd, const void *buf, size_t n, int flags)
    int MSG_NOSIGNAL

from hybrid._speedups.cycle import ClientDisconnected, build_scope
from hybrid._speedups.h1 import H1Error, LocalProtocolError
from hybrid._speedups.task import BLOCKED_STEP, start_request_task

_current_task = asyncio.current_task
from hybrid.asgi.errors import log_app_exception
from hybrid.request_id import request_id_of
from hybrid.body_timeout import MIN_BODY_RATE, arm as _arm_body, stall_check as _body_stall_check  # (re-exported)
from hybrid.write_wait import finish_write as _finish_write, resolve, stall_tick, unsent_bytes  # (re-exported)

logger = logging.getLogger("hybrid.error")

cdef object _monotonic = time.monotonic
cdef object _perf_counter = time.perf_counter
cdef double _BLOCKED_STEP = BLOCKED_STEP

RECV_SIZE = 65536
cdef Py_ssize_t _RECV_SIZE = RECV_SIZE
# One receive buffer per thread (C11 thread-local; a spare allocates its own on its first recv). One per process
# was safe only while the GIL serialised every recv and its copy out; without the GIL two serving threads would
# share it (issue 20, item 10).
cdef extern from *:
    """
    static _Thread_local char hybrid_recv_buffer[65536];
    """
    char _recv_buffer "hybrid_recv_buffer"[65536]
MAX_BACKLOG_EVENTS = 64  # pipelined events buffered while a request is pending, before reading pauses
# Unread request body a connection will read and drop after the response, to stay usable; past it, close.
DISCARD_LIMIT = 4 << 20

# Nothing to read or write now: a plain socket raises the first two, a TLSConnection's SSLSocket the last two
# (caught only when raised, so the plain-text path pays nothing for them).
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


cdef object _recv_plain(int fd):
    """One recv on a non-blocking plain socket, the GIL held (it does not block): the bytes, b"" at EOF, None
    when nothing is there. Cheaper than socket.recv's argument parsing and GIL round trip, paid per request."""
    cdef ssize_t n = c_recv(fd, _recv_buffer, sizeof(_recv_buffer), 0)
    if n >= 0:
        return PyBytes_FromStringAndSize(_recv_buffer, n)
    if errno == EAGAIN or errno == EINTR:  # (EWOULDBLOCK is EAGAIN on Linux)
        return None
    raise OSError(errno, os.strerror(errno))


cdef Py_ssize_t _send_plain(int fd, bytes data) except -1:
    """One send on a non-blocking plain socket, the GIL held: bytes taken (0 when the buffer is full)."""
    cdef ssize_t n = c_send(fd, PyBytes_AS_STRING(data), len(data), MSG_NOSIGNAL)
    if n >= 0:
        return n
    if errno == EAGAIN or errno == EINTR:  # (EWOULDBLOCK is EAGAIN on Linux)
        return 0
    raise OSError(errno, os.strerror(errno))


cdef class Connection:
    """One HTTP/1.1 connection of a SyncWorker's epoll set (see the module docstring for its path)."""

    HOLD_FIRST_CHUNK = True  # RequestCycle.send holds a first more_body=True chunk briefly (not a stream yet?)
    scheme = "http"  # "https" in TLSConnection (hybrid/tls.py)

    # (attributes: connection.pxd)

    def __init__(self, server, sock, home, client_addr, server_addr):
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self._plain = type(sock) is socket.socket
        self._tls = None if self._plain else ssl_object(sock)
        self.proto = server.new_protocol()
        self.home = home
        self.backlog = deque()
        self.server_addr = server_addr
        self.client_addr = client_addr
        # A trusted reverse proxy (--proxy-headers) reports the real client: decided once per connection.
        self.proxy = server.proxy_trust.for_peer(client_addr) if server.proxy_trust is not None else None
        self.last_active = _monotonic()
        self.discard_budget = DISCARD_LIMIT

    @property
    def draining(self):
        return self.server.draining

    # -- reading ------------------------------------------------------------------------------------------

    cpdef on_readable(self, worker, HeldBatch batch=None):
        """The set owner saw this idle connection readable: read, parse and serve what is complete. ``batch``:
        the owner's list of held responses (``send_last``), flushed when its batch of ready connections ends."""
        if self.async_mode:  # (its thread's loop still serves it: see _go_async)
            self.leave_set()
            return
        try:
            if self._plain:
                data = _recv_plain(self.fd)
            elif self.handshake_deadline and not self._handshake_step():
                return  # (TLS: one handshake step per readable event until it is done, TLSConnection)
            else:
                data = self._recv_other()
        except WOULD_BLOCK:
            return
        except OSError:
            data = b""
        if data is None:
            return
        if not data:
            self.close()
            return
        self.worker = worker
        self.loop = worker.loop
        cdef double now = _monotonic()
        self.last_active = now
        self._feed(data)
        # A head trickling in byte by byte keeps the connection active; --timeout-request-head bounds it.
        self.head_since = (self.head_since or now) if self.proto.head_in_progress else 0.0
        self._batch = batch
        try:
            self._serve()
        finally:
            self._batch = None  # (a later step of a request that awaits writes at once)
        self._settle()

    cdef object _recv_other(self):
        # TLS: straight from OpenSSL (tls_io.pyx) when it can, else through the socket object.
        return tls_recv(self._tls) if self._tls is not None else self.sock.recv(_RECV_SIZE)

    cpdef _feed(self, data):
        try:
            events = self.proto.feed(data)
        except H1Error as exc:
            if self.server.h2c and is_h2c_preface(self, data):  # (the error path only: the hot path pays nothing)
                hand_off_h2(self, data)
                return
            self.error = exc
            events = exc.events  # requests completed before the bad bytes are answered first
        if events:
            self.backlog.extend(events)
            if self.cycle is not None:
                self._route_body()

    cpdef _route_body(self):
        # Body events right after the current request's head belong to its cycle; a next Request stays queued.
        backlog = self.backlog
        cdef RequestCycle cycle = self.cycle
        while backlog:
            event = backlog[0]
            if type(event) is Request:
                return
            backlog.popleft()
            if type(event) is Data:
                cycle.add_body((<Data>event).data)
            else:
                cycle.end_body()
        if self.error is not None and not cycle.body_complete:
            # The rest of the body is malformed or over the limit: it will never complete. The app must not
            # take what came as the whole body, so it sees a disconnect; the client gets the error's status.
            cycle.fail_body()
            self.disconnected = True

    cpdef read_now(self):
        """One non-blocking read for a request body the app is waiting for; True if anything happened."""
        try:
            data = _recv_plain(self.fd) if self._plain else self._recv_other()
        except WOULD_BLOCK:
            return False
        except OSError:
            data = b""
        if data is None:
            return False
        if not data:
            self._lost()
            return True
        self.last_active = _monotonic()  # body progress: what --timeout-request-body measures
        self._feed(data)
        return True

    cpdef want_read(self):
        """The pending app waits for bytes: let this thread's loop watch the socket."""
        cycle = self.cycle
        if self.async_mode and self.registered and cycle is not None and (<RequestCycle>cycle).body_complete:
            # The whole body is read, so the app waits only for a disconnect (Django's listen_for_disconnect, on
            # every request). The set already watches the socket: an EOF (or pipelined bytes) makes it readable
            # there, and leave_set then hands it to this loop (_watch_for_app). Taken out of the set and given
            # to the loop here, it cost four epoll_ctl per request (out, add_reader, remove_reader, back in).
            return
        if not self.reading and not self.disconnected:
            self._unregister()  # (the loop reads it now: the set must not report it too)
            self.reading = True
            self.loop.add_reader(self.fd, self._on_readable_async)
        self._arm_body_timer()

    def _arm_body_timer(self):
        _arm_body(self)  # (hybrid/body_timeout.py)

    def cancel_body_timer(self):
        # A pending timer holds the connection (its callback is a bound method) until it fires, 30 s by default.
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _body_stall_check(self):
        _body_stall_check(self)  # --timeout-request-body (hybrid/body_timeout.py)

    def _on_readable_async(self):
        if not self.read_now():
            return
        cycle = self.cycle
        if self.disconnected or self.error is not None:
            self._stop_reading()
        elif cycle is not None and not cycle.wants_body and (
            not cycle.body_complete or len(self.backlog) > MAX_BACKLOG_EVENTS
        ):
            # The app is not reading (a full body buffer, or many pipelined requests queued behind this one):
            # let TCP push back on the client. receive() asks for more when it needs it.
            self._stop_reading()

    cpdef _stop_reading(self):
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    cpdef _lost(self):
        if not self.disconnected and self.server.lifecycle is not None:
            self.server.lifecycle_disconnected(self)
        self.disconnected = True
        self._stop_reading()
        if self.cycle is not None:
            self.cycle.wake()

    # -- writing ------------------------------------------------------------------------------------------

    cpdef send_now(self, data):
        """Write without waiting; returns the part the kernel did not take (None when all was sent)."""
        if self.held_out is not None:  # (a held response goes first: hybrid/held_write.py)
            held, self.held_out = self.held_out, None
            data = held + data if type(data) is bytes else [held, *data] if type(data) is list else [held, data]
        try:
            if type(data) is list:
                if self._plain:
                    sent = self.sock.sendmsg(data)
                    data = b"".join(data)
                else:  # (TLS: an SSLSocket has no sendmsg; one write of the joined parts makes full records)
                    data = b"".join(data)
                    sent = tls_send(self._tls, data) if self._tls is not None else self.sock.send(data)
            elif self._plain and type(data) is bytes:
                sent = _send_plain(self.fd, data)
            elif self._tls is not None and type(data) is bytes:
                sent = tls_send(self._tls, data)
            else:
                sent = self.sock.send(data)
        except WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self._lost()
            raise ClientDisconnected(f"Client disconnected: {exc}") from None
        if sent == len(data):
            return None
        return memoryview(data)[sent:]

    cpdef send_last(self, data):
        """A response's last bytes (RequestCycle.send). Served from the set owner's batch, a keep-alive
        connection (plain or TLS: the plaintext is held, written with the TLS write at the end) with no request
        queued behind this one holds them until the batch ends (held.pyx), so the batch's apps run back to back
        and its sends leave together (hybrid/held_write.py says why); in a step the loop resumed, to the end of
        that loop iteration's callbacks (held.pyx, send_resumed)."""
        cdef HeldBatch batch = self._batch
        if batch is None:
            return send_resumed(self, data)
        if self.held_out is None and type(data) is bytes and not self.backlog and self.proto.keep_alive:
            self.held_out = data
            batch.add(self)
            return None
        return self.send_now(data)

    def finish_write(self, rest):
        """The kernel did not take everything: an awaitable that sends the rest as the client reads, bounded by
        --timeout-write-stall (hybrid/write_wait.py)."""
        return _finish_write(self, rest)

    # -- serving ------------------------------------------------------------------------------------------

    cpdef _serve(self):
        """Run the queued requests one after another while each finishes inline."""
        backlog = self.backlog
        while self.cycle is None and self.sock is not None:
            if backlog:
                event = backlog.popleft()
                if type(event) is Request:
                    self._start(event)
                elif type(event) is Data:
                    # The rest of a body the app answered without reading: drop it, up to a bound in bytes; in
                    # time, the owner's sweep closes it --timeout-request-body after the first dropped byte
                    # (a trickle keeps it active forever), --timeout-keep-alive after the last (nginx's
                    # lingering_time and lingering_timeout).
                    if not self.discard_since:
                        self.discard_since = _monotonic()
                    self.discard_budget -= len((<Data>event).data)
                    if self.discard_budget < 0:
                        self.close()
                        return
                else:  # that body's end: the connection is usable again
                    self.discard_since = 0.0
            elif self.error is not None:
                self.answer_error(self.error)
                return
            else:
                return

    cpdef _start(self, request):
        cdef Request req = request
        worker = self.worker
        server = self.server
        cdef dict base = self._scope_base
        if base is None:
            base = self._first_request(server)
        if req.upgrade is not None:
            self._hand_off_websocket(req)  # (set only under --ws wsproto) to the pool before any app code
            return
        router = self._router
        if req.wants_stream or (router.active and router.wants_pool(
                req.method.decode("latin-1"), req.path.decode("latin-1"))):
            self._hand_off(req)  # a stream: to the async pool before any app code runs
            return
        server.requests += 1
        self.discard_budget = DISCARD_LIMIT
        cdef RequestCycle cycle = RequestCycle(self, req, scope_from(base, self, req, worker.state, self._request_ids,
                                                                     None))
        self.cycle = cycle
        if self._lifecycle is not None:
            server.lifecycle_started(self, cycle)
        self._route_body()
        app = self._app
        if self._concurrency is not None:  # --limit-concurrency: past it, a built-in app answers 503
            app = self._concurrency.admit(app)
            cycle.admitted = app is self._app
        monitor = worker.monitor  # (SyncWorker.enter_app / leave_app, as C calls)
        cdef int slot = worker.slot
        mark_enter(monitor, slot, self.fd if self.registered else -1)
        # Timed only while other requests are pending in this loop: they are who a blocking first step delays.
        cdef double started = _perf_counter() if worker.pending else 0.0
        try:
            task = start_request_task(app(cycle.scope, cycle.receive, cycle.send), self.loop, worker)
        except BaseException as exc:  # the app object could not even be called
            task = self.loop.create_future()
            task.set_exception(exc)
        finally:
            if mark_leave(monitor, slot):
                worker.left_blocked(self, None)  # (rare: taken over, or its stack read: the first step blocked)
        if started and _perf_counter() - started > _BLOCKED_STEP:
            worker.step_blocked(task, cycle, _perf_counter() - started)
        cycle.task = task
        if task.done():
            self._complete(task)
        else:
            task._hy_cycle = cycle
            worker.pending += 1
            task._hy_conn = self  # (the step that ends it calls _on_task_done: task.pyx, _after_step)
            if cycle.response_complete and not cycle.writing:
                self._release(cycle)  # the app goes on after its response (background tasks): not our business
            else:
                self._go_async()

    cdef dict _first_request(self, server):
        # At the first request, not in __init__: after any subclass's __init__ set its addresses.
        self._request_ids = server.request_ids
        self._router = server.router
        self._app = server.app
        self._concurrency = server.concurrency
        self._lifecycle = server.lifecycle
        self._scope_base = scope_template(self, server.root_path)
        return self._scope_base

    def response_complete(self, cycle):
        """RequestCycle.send wrote the last body message of a request whose task is pending (past its first
        step). If the app is still running once this step is over (a BackgroundTask after the response), the
        connection does not wait for it: it serves its next request meanwhile, as in uvicorn.
        Sent from a step of the request's own task, this is decided at that step's end (task.pyx, _after_step),
        when the task has either ended (then nothing is left to release) or goes on; from another task (a child
        task of the app), in the next loop iteration."""
        task = (<RequestCycle>cycle).task
        if task is not None and _current_task(self.loop) is task:
            task._hy_release = True
        else:
            self.loop.call_soon(self._release_later, cycle)

    def _release_later(self, cycle):
        if cycle is self.cycle and cycle.task is not None and not cycle.task.done():
            self._release(cycle)
            self._serve()
            self._settle()

    def _release(self, cycle):
        """The response is complete and the app still runs: the connection goes on without it (_on_task_done
        only logs what the task raises)."""
        self.cycle = None
        if self.server.access_log:
            log_access(self, cycle, "worker" if type(self) is Connection else self.server.where(self))
        if self.disconnected or (not self.proto.keep_alive and self.error is None):
            self.close()
            return
        self.last_active = _monotonic()

    def streaming_started(self, cycle):
        """The app streams a response here, in a worker: a second ``more_body=True`` message (one alone is how
        Starlette's BaseHTTPMiddleware sends every response). The route is learned, so its next requests go
        straight to the async pool before any app code runs. This one is never run again (the app runs exactly
        once per request: a GET may have side effects): it streams from this thread to the end, and the monitor
        hands the set's other connections to a spare if one of its steps blocks."""
        scope = cycle.scope
        self.server.router.learn(scope["method"], scope["path"])

    def _hand_off(self, request):
        """Give this connection to the async pool (StreamingHandoff) and forget it: from here on the pool owns
        the socket, the protocol state and the events read past this request's head. No app code has run."""
        from hybrid.async_pool import StreamingHandoff

        if self.held_out is not None and not send_held_first(self):  # (held.pyx)
            return
        if self.registered:
            self.home.remove(self)
        self._stop_reading()
        sock, self.sock = self.sock, None  # _serve and _settle stop at once: the connection is not ours
        self.cycle = None
        scope = build_scope(self, request, self.server.root_path, {})
        self.server.pool.accept_handoff(StreamingHandoff(
            conn=self, sock=sock, scope=scope, request_id=request_id_of(scope), request=request,
        ))

    def _hand_off_websocket(self, request):
        """A WebSocket upgrade: the pool completes the handshake and runs the app (WebSocketHandoff); the
        H1Protocol has switched protocols, and what the client sent after the head is in its trailing data."""
        from hybrid.async_pool import WebSocketHandoff
        from hybrid.asgi.websocket import build_websocket_scope

        if self.held_out is not None and not send_held_first(self):  # (held.pyx)
            return
        if self.registered:
            self.home.remove(self)
        self._stop_reading()
        scope = build_websocket_scope(self, request, self.server.root_path, {})  # (its TLS details read the socket)
        sock, self.sock = self.sock, None
        self.cycle = None
        self.backlog.clear()  # (the upgrade request's EndOfMessage: nothing after it is HTTP)
        self.server.pool.accept_handoff(WebSocketHandoff(
            conn=self, sock=sock, request=request, trailing=self.proto.trailing_data, client=self.client_addr,
            server=self.server_addr, scope=scope,
        ))

    def resume(self, worker):
        """Given back by the async pool with requests already read (pipelined behind a stream): this thread
        serves them, then the connection goes back into a set."""
        self.worker = worker
        self.loop = worker.loop
        self._serve()
        self._settle()

    def _go_async(self):
        # The app awaits: this thread's loop serves the connection until the response is done (its next
        # pipelined bytes are read by us, into the backlog). The socket is watched only once the app waits in
        # receive(): a client's next bytes (or its EOF) wait in the kernel until then, and a response to a
        # client that left fails at its write.
        # The connection stays in its set meanwhile, marked: no client sends more while it waits for a
        # response (wrk, browsers, proxies), so taking it out and putting it back cost two epoll_ctl per
        # request, each a GIL release that let another thread in (an anyio worker of a `def` endpoint) in
        # the middle of the serving thread's batch. It leaves the set only when the set reports it readable
        # meanwhile (pipelined bytes, an EOF: leave_set, from on_readable) or the app reads a body not yet
        # arrived (want_read); _settle unmarks it, or puts it back.
        self.async_mode = True

    cpdef leave_set(self):
        """The set reported readable a connection its thread's loop still serves (``async_mode``): it leaves
        the set (level-triggered, it would be reported again and again) and goes back into one in _settle.
        Called by the set's owner, which may be a spare that took the set over while the serving thread was
        stuck: the connection stays the serving thread's."""
        if self.async_mode:
            self._unregister()
            cycle = self.cycle
            if cycle is not None and (<RequestCycle>cycle).waiter is not None:
                # The app waits in receive() with its whole body read (want_read left it in the set): this
                # thread's loop reads the socket now, so an EOF reaches the app as http.disconnect. Through the
                # loop (call_soon is thread-safe): the set's owner may be a spare that took it over.
                self.loop.call_soon(self._watch_for_app, cycle)

    def _watch_for_app(self, cycle):
        # (still the same request, still waiting, still out of the set: else _settle or receive() saw to it)
        # (and no file is being written by the async pool: it may use a TLS connection's SSLSocket, pathsend.py)
        if cycle is self.cycle and (<RequestCycle>cycle).waiter is not None and not self.registered and \
                not getattr(self, "in_pool_job", False):
            self.want_read()

    cdef _unregister(self):
        # ConnectionSet.remove in one piece, the GIL held throughout (select.epoll releases it): a spare that
        # owns the set after a takeover runs this while the serving thread may be in _settle, deciding from
        # `registered` whether to put the connection back; a half-done removal between the two lost it.
        if not self.registered:
            return
        home = self.home
        self.registered = False
        home.conns.pop(self.fd, None)
        if not home.epoll.closed:
            _epoll_ctl(home.fd, EPOLL_CTL_DEL, self.fd, NULL)  # (ENOENT: the monitor took it out at a takeover)

    def _on_task_done(self, task):
        task._hy_worker.pending -= 1
        # The task and its cycle point at each other (the cycle's task, the task's cycle): break that here, or
        # each request that awaited leaves its scope, exit stacks and frames to the cyclic garbage collector,
        # whose full collections then stall the serving thread (seen with FastAPI: 22 objects per request).
        cycle, task._hy_cycle = task._hy_cycle, None
        (<RequestCycle>cycle).task = None
        if cycle is not self.cycle:  # released after its response (_release): only its error matters
            if cycle.admitted:  # (its --limit-concurrency slot lasts as long as the app runs)
                self.server.concurrency.release()
            exc = None if task.cancelled() else task.exception()
            if exc is not None and not isinstance(exc, ClientDisconnected):
                log_app_exception(logger, exc)
            return
        self._complete(task)
        # Still owned by this thread (in its set but marked, or out of it): serve pipelined requests first, then
        # back to being an idle connection of a set.
        self._serve()
        self._settle()

    cpdef _settle(self):
        """Between requests: a connection that left its set (async serving, takeover) goes back into one."""
        if self.sock is None or self.cycle is not None:
            return
        if self.async_mode:
            self._stop_reading()
            self.async_mode = False
        if self.registered:
            return
        target = self.worker.conn_set or self.home
        try:
            target.add(self)
        except (OSError, ValueError):  # the set is closed: the server is shutting down
            self.close()

    cpdef _complete(self, task):
        cdef RequestCycle cycle = self.cycle
        server = self.server
        if cycle.admitted:
            server.concurrency.release()
        if cycle.held is not None:  # the app ended (failed) after one more_body=True chunk: it goes out as sent
            cycle._flush_held()
        if cycle.flushing is not None:
            # The app ended while the rest of a flushed held chunk was still being written, so the response is
            # incomplete and the socket closes below: stop that write and its watch on the fd first, or the fd
            # number, reused by the next connection, would be watched (and later unwatched) for a dead task.
            cycle.flushing.cancel()
            cycle.flushing = None
            self.loop.remove_writer(self.fd)
        try:
            exc = task.exception()  # (one call: a cancelled task raises here, no cancelled() first)
        except asyncio.CancelledError:
            exc = asyncio.CancelledError("the request task was cancelled")
        if exc is not None and not isinstance(exc, ClientDisconnected) and not (
            server.draining and isinstance(exc, asyncio.CancelledError)  # streams cut at the graceful timeout
        ):
            log_app_exception(logger, exc)
        self.cycle = None
        if not cycle.wrote:
            # Nothing reached the client yet: it gets a complete error response.
            if exc is None and not cycle.response_started and not self.disconnected:
                # (a client that left mid-body is not the app's error: the app saw http.disconnect)
                logger.error("ASGI callable returned without starting a response.")
            if self.error is not None:
                self.answer_error(self.error, cycle)  # the request itself was malformed (e.g. its chunked body)
            elif not self.disconnected:
                self._answer_500(cycle)
            self.close()
            return
        if not cycle.response_complete:
            if exc is None and not self.disconnected:
                logger.error("ASGI callable returned without completing the response.")
            if server.access_log and self.disconnected:  # what reached a client cut off (or gone) mid-response
                log_access(self, cycle, "worker" if type(self) is Connection else server.where(self))
            self.close()  # the client must not take a truncated body for a whole one
            return
        # An exception after a complete response (Starlette's error middleware sends its 500, then re-raises)
        # was logged above; the response was whole and framed, so the connection stays usable. Closing it
        # would race a client that already sent its next request on it (it would get a reset).
        if server.access_log:  # (the line is made in C: accesslog.pyx)
            log_access(self, cycle, "worker" if type(self) is Connection else server.where(self))
        if server.lifecycle is not None:
            server.lifecycle_completed(self, cycle)
        if self.disconnected or (not self.proto.keep_alive and self.error is None):
            self.close()  # (with an error pending, _serve answers it with its status, then closes)
            return
        self.last_active = _monotonic()

    def _answer_500(self, cycle):
        try:
            out = self.proto.send_response(
                500, [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")], 22
            )
            self.send_now(out + self.proto.send_body(b"Internal Server Error\n", False))
        except (OSError, LocalProtocolError):
            return
        self.server.server_answered(self, 500, 22, cycle)  # (access log, metrics)

    cpdef answer_error(self, exc, cycle=None):
        """Answer a malformed or timed-out request with its status and close (called by the owner only).
        ``cycle``: the request, when its head was whole (a malformed or oversized body)."""
        try:
            self.send_now(self.proto.send_error(exc.status_code, exc.reason))
            self.server.server_answered(self, exc.status_code, len(exc.reason.encode()) + 1, cycle)  # (its body)
        except OSError:
            pass
        self.close()

    cpdef close(self):
        if self.sock is None:
            return
        if self.held_out is not None:  # (not held for a response that closes; best effort all the same)
            try:
                self.send_now(b"")
            except (OSError, ClientDisconnected):
                pass
        self.home.remove(self)
        self._stop_reading()
        if self.body_timer is not None:
            self.cancel_body_timer()
        self.disconnected = True
        if self.cycle is not None:
            self.cycle.wake()
        if self.server.lifecycle is not None:
            self.server.lifecycle_closed(self.fd)
        try:
            self.sock.close()
        finally:
            self.sock = None
            self.proto.release()  # (no reference cycle left for the collector)
            self.server.forget(self)
