"""``--mode async``: every connection is served by the AsyncPool's one loop, as a classic asyncio server would.

The escape hatch for apps whose startup resources cannot be made per loop (a module-level client bound to the
first loop that used it): there are no SyncWorker threads, no monitor takeovers and no handoffs. The same
compiled H1Protocol parses, the same request logic (``Connection`` via ``PoolConnection``) runs the app, over
the same compiled ``SocketStream``; a blocking handler then stalls everyone, exactly as under uvicorn.

Path of a request: the pool loop watches the listeners (``AsyncAcceptor``), accepts, and starts an
``AsyncConnection``'s reader task. Bytes are fed to the H1Protocol; each complete request starts the app as a
tracked task on the pool loop; when it completes, the connection reads the next request (keep-alive), bounded by
``--timeout-keep-alive`` while idle and ``--timeout-request-head`` while a head trickles in.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from time import monotonic_ns

from hybrid._speedups.h1 import H1Error
from hybrid._speedups.streams import SocketStream, StreamClosed
from hybrid.async_pool import PoolConnection
from hybrid.connection import (
    Connection,
    accept_into,
    accepted_addresses,
    resolve,
    still_sending,
    unread_bytes,
    unsent_bytes,
)
from hybrid.lifecycle import ConnectionOpened

logger = logging.getLogger("hybrid.error")

ACCEPT_BATCH = 64


class AsyncConnection(PoolConnection):
    """A connection that lives on the pool loop from accept to close, serving request after request."""

    __slots__ = ()

    def __init__(self, pool, sock: socket.socket, client_addr, server_addr) -> None:
        Connection.__init__(self, pool.server, sock, None, client_addr, server_addr)
        self.scheme = "https" if isinstance(sock, ssl.SSLSocket) else "http"
        self.loop = pool.loop
        self.async_mode = True
        self.pool = pool
        self.request_id = None  # each request's id is worked out from its own headers (request_id.py)
        self.reader = None
        self.flusher = None
        self.stream = SocketStream(sock, pool.loop)

    # -- reading: a task per connection, which also bounds the idle and head waits (the pool's handed-off
    # streams read by the stream's callback instead, StreamConnection) ------------------------------------

    def read_now(self) -> bool:
        return False

    def want_read(self) -> None:
        if self.reader is None and not self.disconnected:
            self.reading = True
            self.reader = self.loop.create_task(self._read_loop())
        self._arm_body_timer()

    def _stop_reading(self) -> None:
        reader = self.reader
        if reader is not None and reader is not asyncio.current_task(self.loop):
            reader.cancel()
        self.reader = None
        self.reading = False

    def _lost(self) -> None:
        if not self.disconnected and self.server.lifecycle is not None:
            self.server.lifecycle_disconnected(self)
        self.disconnected = True
        if self.cycle is not None:
            self.cycle.wake()

    def _start(self, request) -> None:
        if request.upgrade is not None:
            # The stream may hold bytes read past the head: they are WebSocket frames, so they join the
            # protocol's trailing data before the session takes the socket.
            sock, unread = self.stream.detach()
            if unread:
                self.proto.feed(unread)
            self.sock = sock
            self.registered = False
            self._hand_off_websocket(request)
            return
        super()._start(request)

    def _serve(self) -> None:
        Connection._serve(self)  # every queued request, in order (the pool serves them all in this mode)

    def _settle(self) -> None:
        """After a response: read the next request, or close when draining or the client is gone."""
        if self.sock is None or self.cycle is not None:
            return
        if self.server.draining or self.stream.peer_gone or self.disconnected:
            self.close()
            return
        self.last_active = time.monotonic()
        self.want_read()

    async def _read_loop(self) -> None:
        config = self.server.config
        try:
            while not self.disconnected and self.sock is not None:
                if self.cycle is None:
                    # Between requests: idle (keep-alive) or a head arriving, each with its bound.
                    now = time.monotonic()
                    if self.head_since:
                        left = self.head_since + config.timeout_request_head - now
                    else:
                        left = config.timeout_keep_alive
                        if self.discard_since:  # an unread body trickling in (Connection._serve): in total too
                            left = min(left, self.discard_since + config.timeout_request_body - now)
                    try:
                        async with asyncio.timeout(max(left, 0.0)):
                            data = await self.stream.read()
                    except TimeoutError:
                        if self.head_since:
                            self.reader = None
                            self.answer_error(H1Error(408, "Request header timeout"))
                        elif still_sending(self, self.stream.write_buffer_size() + unsent_bytes(self.fd),
                                           time.monotonic(), config.timeout_write_stall):
                            continue  # (the keep-alive time starts once the client has the last response)
                        elif self.stream.buffered() or unread_bytes(self.fd):
                            continue  # (a request came while the loop could not read it: serve it, not reset it)
                        else:
                            self.close()
                        return
                else:
                    data = await self.stream.read()
                    self.last_active = time.monotonic()  # body progress (--timeout-request-body)
                if not data:
                    # Between requests the client may leave: no ClientDisconnected then, as in the threaded
                    # mode (its epoll set closes such a connection; only a request's reader or writer reports).
                    if self.cycle is None:
                        self.close()
                    else:
                        self._lost()
                    return
                self._feed(data)
                if self.cycle is None:
                    now = self.last_active = time.monotonic()
                    self.head_since = (self.head_since or now) if self.proto.head_in_progress else 0.0
                    self.reader = None  # the requests started now may ask for their body with want_read()
                    self.reading = False
                    self._serve()
                    self._settle()
                    return
                cycle = self.cycle
                if self.error is not None or cycle is None or not cycle.wants_body:
                    return
        except (StreamClosed, OSError):
            if self.cycle is None:
                self.close()
            else:
                self._lost()
        finally:
            if self.reader is asyncio.current_task(self.loop):
                self.reader = None
                self.reading = False

    def answer_error(self, exc: H1Error, cycle=None) -> None:
        try:
            self.stream.write(self.proto.send_error(exc.status_code, exc.reason))
            self.server.server_answered(self, exc.status_code, len(exc.reason.encode()) + 1, cycle)  # (its body)
        except (StreamClosed, OSError):
            pass
        self.close()

    def idle(self) -> bool:
        return self.cycle is None and not self.proto.head_in_progress


class AsyncAcceptor:
    """The listeners, watched by the pool loop. ``pause_accepting``/``resume_accepting`` (--limit-connections)
    and ``close_door`` (shutdown) may be called from any thread."""

    def __init__(self, server, pool, listeners) -> None:
        self.server = server
        self.pool = pool
        self.listeners = list(listeners)
        self.watching = False
        self.handshakes: set = set()

    def start(self) -> None:
        self.pool.loop.call_soon_threadsafe(self._watch, True)

    def _watch(self, on: bool) -> None:
        if on == self.watching:
            return
        for listener in self.listeners:
            if on:
                self.pool.loop.add_reader(listener.fileno(), self._accept, listener)
            else:
                self.pool.loop.remove_reader(listener.fileno())
        self.watching = on

    def pause_accepting(self) -> None:
        self.pool.loop.call_soon_threadsafe(self._watch, False)

    def resume_accepting(self) -> None:
        if self.listeners:
            self.pool.loop.call_soon_threadsafe(self._watch, True)

    def _accept(self, listener, batch: int = ACCEPT_BATCH, limited: bool = True) -> None:
        accept_into(listener, self.adopt, batch, self.server.connection_limit if limited else None)

    def adopt(self, sock: socket.socket, addr) -> None:
        """An accepted socket becomes an AsyncConnection (on the pool loop)."""
        client, local = accepted_addresses(sock, addr, self.server.config.uds)
        if self.server.lifecycle is not None:  # (at accept, before a TLS handshake, as SyncWorker.adopt does)
            self.server.lifecycle.event(ConnectionOpened(monotonic_ns(), sock.fileno(), client, local))
        if self.server.ssl_context is not None:
            task = self.pool.loop.create_task(self._tls_handshake(sock, client, local))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)
            return
        self._serve(sock, client, local)

    def _serve(self, sock, client, local) -> None:
        conn = AsyncConnection(self.pool, sock, client, local)
        self.server.connections.add(conn)
        conn.want_read()

    async def _tls_handshake(self, raw: socket.socket, client, local) -> None:
        """--mode async with TLS: the handshake as a task on the pool loop, bounded by --timeout-tls-handshake
        (hybrid mode steps it from the epoll set instead: hybrid/tls.py)."""
        loop = self.pool.loop
        fd = raw.fileno()
        try:
            sock = self.server.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except OSError:  # the client reset before its socket could be wrapped
            if self.server.lifecycle is not None:
                self.server.lifecycle_closed(fd)
            raw.close()
            return
        try:
            async with asyncio.timeout(self.server.config.timeout_tls_handshake):
                while True:
                    try:
                        sock.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        add, remove = loop.add_reader, loop.remove_reader
                    except ssl.SSLWantWriteError:
                        add, remove = loop.add_writer, loop.remove_writer
                    ready = loop.create_future()
                    add(fd, resolve, ready)
                    try:
                        await ready
                    finally:
                        remove(fd)
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %r", client, exc)
            if self.server.lifecycle is not None:
                self.server.lifecycle_closed(fd)
            sock.close()
            return
        from hybrid.h2.handoff import hand_off_tls

        if not hand_off_tls(self.server, sock, client, local):  # (ALPN h2: to HTTP/2, hybrid/h2)
            self._serve(sock, client, local)

    def adopt_all(self, accepted, done) -> None:
        try:
            for sock, addr in accepted:
                self.adopt(sock, addr)
        finally:
            done.set()

    def close_door(self, done) -> None:
        """Shutdown, on the pool loop: accept what is queued in the kernel, then stop watching the listeners."""
        try:
            for listener in self.listeners:
                self._accept(listener, batch=1 << 16, limited=False)
            self._watch(False)
            self.listeners = []
        finally:
            done.set()

    def drain(self, grace: float) -> None:
        """Shutdown, on the pool loop: close connections idle for ``grace`` seconds; repeat until none is left."""
        deadline = time.monotonic() - grace
        left = False
        for conn in list(self.server.connections):
            if type(conn) is AsyncConnection:
                if conn.idle() and conn.last_active < deadline:
                    conn.close()
                else:
                    left = True
        if left:
            self.pool.loop.call_later(grace / 5, self.drain, grace)
