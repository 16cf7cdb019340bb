"""A WebSocket over one HTTP/2 stream (RFC 8441): the ASGI ``websocket`` cycle of an extended CONNECT.

Where it runs, and why: on the pool's loop, as the session's own task, like an HTTP/1.1 WebSocket after its
handoff. A WebSocket lives as long as its client wants: on a worker's loop it would stop whenever another
handler of that thread blocks, and nothing holds a serving thread for it.

What it reuses: ``WebSocketSession``'s ASGI ``receive``/``send``, message assembly, ping answers, close
handshake, keepalive and ``--ws-*`` bounds (hybrid/asgi/websocket.py and its mixins) over wsproto's frame layer
(``wsproto.connection.Connection``: RFC 6455 framing with no handshake; client frames must be masked). What
differs is the transport, here: the handshake is a HEADERS frame (``:status 200``, or the denial), frames travel
in DATA frames of the stream, the socket's FIN is END_STREAM and a lost peer is RST_STREAM.

Flow control both ways: DATA is acknowledged (WINDOW_UPDATE) only as it is parsed, and parsing pauses while
QUEUE_HIGH messages wait for the app or WRITE_HIGH_WATER bytes of ours wait for the client's window (a peer that
reads nothing cannot make us buffer Pongs without bound: the HTTP/1.1 rule). Frames we send go out within the
stream's and connection's windows; the app's send waits (at most --timeout-write-stall) while more than
WRITE_HIGH_WATER bytes wait.

permessage-deflate (RFC 7692) is negotiated from ``sec-websocket-extensions`` as over HTTP/1.1, with the same
bounded inflation (ws_deflate.py).
"""

from __future__ import annotations

import logging
from collections import deque
from threading import get_ident

from h2.errors import ErrorCodes
from h2.exceptions import H2Error
from wsproto.connection import Connection, ConnectionType
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import split_comma_header

from hybrid._speedups.h2fields import response_fields
from hybrid._speedups.outbox import Outbox
from hybrid._speedups.wsframe import encode_frame, frame_header
from hybrid.asgi.http import ClientDisconnected
from hybrid.asgi.websocket import SMALL_FRAME, WebSocketSession
from hybrid.asgi.ws_deflate import BoundedDeflate
from hybrid.asgi.ws_handshake import _header_list
from hybrid.asgi.ws_states import CLOSED, CLOSING, CONNECTING, OPEN, QUEUE_HIGH, RESPONDING, WRITE_HIGH_WATER
from hybrid.h2.bound import wait_bounded

logger = logging.getLogger("hybrid.error")


class H2WebSocket(WebSocketSession):
    """One WebSocket on an HTTP/2 stream. To the session (session.py) it is a stream like ``H2Stream``: it is
    fed DATA (``on_data``), the client's END_STREAM (``on_end``), a reset or a lost connection (``on_gone``),
    window updates (``wake_window``)."""

    is_websocket = True
    in_pool = True

    def __init__(self, session, stream_id: int, scope: dict) -> None:  # (not WebSocketSession's: no socket)
        self.session = session
        self.id = stream_id
        self.pool = session.pool
        self.server = session.server
        self.config = self.pool.config
        self.loop = session.loop
        self.thread = get_ident()  # the pool loop's: app code on another loop is marshalled here (crossloop.py)
        self.outbox = Outbox()  # data messages sent from other loops, not yet written (crossloop.py)
        self.sock = session.sock  # (not None while the stream is ours: what shutdown's wait looks at)
        self.client_addr = session.client_addr
        self.server_addr = session.server_addr
        self.scope = scope
        self.ws = None  # wsproto's frame layer, once accepted
        self.fast_send = False
        self.state = CONNECTING
        self.status = 0
        self.headers = ()  # (the response's fields: session.send_headers sends them)
        self.task = None
        self.reader = None
        self.incoming: deque = deque()
        self.waiter = None
        self.room = None
        self.connect_delivered = False
        self.disconnect = None
        self.parts: list = []
        self.size = 0
        self.discarding = False
        self.failed = False
        self.shutting_down = False
        self.ping_timer = self.pong_timer = self.close_timer = self.open_timer = self.end_timer = None
        # -- the stream, as the session sees it
        self.body: deque = deque()  # (data, flow) read but not parsed yet: the session releases it if we go
        self.body_bytes = 0  # (--limit-request-body is not this stream's bound: --ws-max-size is)
        self.ended = False  # the client's END_STREAM came
        self.gone = False  # reset, or the connection lost
        self.sent_headers = False
        self.complete = False
        self.sent = 0
        self.window_waiter = None
        self.out = bytearray()  # frames waiting for the client's window
        self.end_pending = False  # END_STREAM goes out once ``out`` is sent
        self.end_sent = False
        self.room_out = None  # the app's send, waiting for ``out`` to shrink
        self.feeding = False
        self.counted = False  # a WebSocketOpened went to the lifecycle collector: _forget sends its one close

    # -- from the session --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the app (the session counted the request): on the pool's loop, like any long stream."""
        self.pool.websockets.add(self)
        server = self.server
        if server.lifecycle is not None:  # (counted as an HTTP/1.1 WebSocket is at its handoff: before the app)
            self.counted = True
            server.lifecycle_ws_opened(self.session.fd, self.id, self.scope)
        self.task = self.pool.start_app(self.scope, self.receive, self.send, self, self._on_app_done)
        self.open_timer = self.loop.call_later(self.config.ws_open_timeout, self._open_timed_out)

    def on_data(self, data: bytes, flow: int) -> None:
        if self.state == CLOSED and self.end_sent:
            self.session._ack(self.id, flow)  # (nobody parses it any more: keep the windows open)
            return
        self.body.append((data, flow))
        self._feed(False)  # (the session's read writes what this queued, WINDOW_UPDATEs too, once handled)

    def on_end(self) -> None:
        self.ended = True
        if self.ws is not None:
            self._feed()  # what is left, then the end (wsproto: 1006 unless a close frame came first)
        elif self.state == CONNECTING:
            self._set_disconnect(1006, "")
        if self.end_sent:
            self._forget()

    def on_gone(self) -> None:
        """RST_STREAM (either side) or the connection lost: the app gets websocket.disconnect 1006."""
        self.gone = True
        self._set_disconnect(1006, "")
        self._stop_timers()
        self.state = CLOSED
        self._wake_out()
        self.wake_window()
        self._forget()

    def cancel_app(self) -> None:
        """(A reset does not cancel the app: it hears websocket.disconnect, as when an HTTP/1.1 peer is lost.)"""

    def wake_window(self) -> None:
        waiter = self.window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.out or self.end_pending:
            self._pump()

    async def wait_window(self, timeout: float) -> None:  # (session.send_data: a denial response's body)
        self.window_waiter = self.loop.create_future()
        try:
            if not await wait_bounded(self.loop, self.window_waiter, timeout):
                raise TimeoutError
        finally:
            self.window_waiter = None

    # -- reading -------------------------------------------------------------------------------------------------

    def _feed(self, flush: bool = True) -> None:
        """Parse what came, within the bounds (module doc); the window opens for what was parsed."""
        if self.feeding or self.ws is None:
            return
        self.feeding = True
        acked = False
        try:
            body = self.body
            while body and self.state != CLOSED and len(self.incoming) < QUEUE_HIGH \
                    and len(self.out) <= WRITE_HIGH_WATER:
                data, flow = body.popleft()
                self.session._ack(self.id, flow)
                acked = True
                if not self.failed:
                    self._receive(data)
            if self.ended and not body and self.state != CLOSED:
                if self.failed:
                    self.state = CLOSED
                    self._finish()
                else:
                    self._receive(None)  # (wsproto: CloseConnection 1006, or what it owes)
                    if self.state != CLOSED:
                        self._set_disconnect(1006, "")
                        self._finish()
            elif self.state == CLOSED and body:
                self.session._release_body(self)
        finally:
            self.feeding = False
        if acked and flush:
            self.session._flush_soon()

    async def receive(self) -> dict:
        message = await super().receive()
        if self.body and len(self.incoming) < QUEUE_HIGH // 2 and get_ident() == self.thread:
            self._feed()  # the app caught up: read on
        return message

    # -- writing -------------------------------------------------------------------------------------------------

    def _write(self, data) -> bool:
        if self.gone or self.session.closed:
            return False
        if data:
            self.out += data
            self._pump(not self.feeding)  # (what the reader answers goes with the read's other frames)
        return not self.gone

    def _send_frame(self, first: int, payload: bytes) -> int:
        """A whole message as one frame built in C (``fast_send``: no extension in use), as over HTTP/1.1;
        returns the bytes waiting."""
        if self.gone or self.session.closed:
            self._lost()
            raise ClientDisconnected("the WebSocket peer went away")
        if len(payload) <= SMALL_FRAME:
            self.out += encode_frame(first, payload)
        else:
            self.out += frame_header(first, len(payload))
            self.out += payload
        # Written at once, as over HTTP/1.1: deferred to the iteration's end, an echo cost one more loop
        # iteration (an epoll_wait) per message. The price: the messages of several WebSockets of one
        # connection sent in one iteration leave in one write each.
        self._pump(True)
        return len(self.out)

    def _pump(self, now: bool = False) -> None:
        """Hand h2 what the windows allow of ``out``, then END_STREAM once it is all sent; written ``now``, or
        with this loop iteration's other frames."""
        if self.gone or self.session.closed:
            return
        h2 = self.session.h2
        sid = self.id
        out = self.out
        try:
            while out:
                n = min(len(out), h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
                if n <= 0:
                    break
                h2.send_data(sid, bytes(out[:n]))
                del out[:n]
                self.sent += n
            if not out and self.end_pending and not self.end_sent:
                self.end_sent = True
                h2.end_stream(sid)
        except H2Error:
            self.session._reset(self, ErrorCodes.INTERNAL_ERROR)
            return
        if now:
            self.session._flush()
        else:
            self.session._flush_soon()
        if len(out) <= WRITE_HIGH_WATER:
            self._wake_out()
            if self.body and not self.feeding:
                self.loop.call_soon(self._feed)  # (reading paused for our output: read on)
        if self.end_sent and self.ended:
            self._forget()

    def _wake_out(self) -> None:
        waiter = self.room_out
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _unsent(self) -> int:
        """Our output waiting for the client's windows; over the mark as well while the connection's socket is
        behind (read from other threads: crossloop.py hands a send over only below the mark)."""
        if self.session.stream.write_buffer_size() > WRITE_HIGH_WATER * 4:
            return WRITE_HIGH_WATER + 1
        return len(self.out)

    async def _drain(self) -> None:
        """The app's send waits while our output waits for the client (its windows, or the socket)."""
        session = self.session
        while not self.gone and len(self.out) > WRITE_HIGH_WATER:
            self.room_out = self.loop.create_future()
            try:
                room = await wait_bounded(self.loop, self.room_out, session.stall)
            finally:
                self.room_out = None
            if not room:
                logger.info("Reset an HTTP/2 WebSocket whose client opened no window for %g s "
                            "(--timeout-write-stall).", session.stall)
                session._reset(self, ErrorCodes.CANCEL)
        if self.gone:
            raise ClientDisconnected("the WebSocket peer went away")
        if session.stream.write_buffer_size() > WRITE_HIGH_WATER * 4:
            await session._drain()

    async def send(self, message: dict) -> None:
        if self.ws is not None and self.state in (CLOSING, CLOSED) and get_ident() == self.thread:
            kind = message["type"]
            if kind == "websocket.close":
                return  # already closing or closed: nothing more to say
            if kind == "websocket.send":
                raise ClientDisconnected("the WebSocket is closed")
        await super().send(message)

    # -- the handshake: a HEADERS frame ----------------------------------------------------------------------

    def _open_timed_out(self) -> None:
        self.open_timer = None
        super()._open_timed_out()

    def _respond(self, status: int, headers: list, end: bool) -> None:
        if self.open_timer is not None:
            self.open_timer.cancel()
            self.open_timer = None
        self.status = status
        self.headers = headers
        self.sent_headers = True
        if self.gone or self.session.closed:
            raise ClientDisconnected("the client reset the stream")
        self.session.send_headers(self, end)
        if end:
            self.end_sent = self.end_pending = True

    def _send_handshake(self, kind: str, message: dict) -> None:
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._respond(403, [], True)  # closing before the accept denies it: 403 (ASGI spec)
            self._denied()
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not isinstance(status, int) or not 100 <= status <= 599:
                raise ValueError(f"ASGI: invalid status {status!r} in 'websocket.http.response.start'")
            self._respond(status, response_fields(_header_list(message.get("headers"), kind)), False)
            self.state = RESPONDING
        else:
            raise RuntimeError(f"ASGI: {kind!r} sent before the WebSocket was accepted (expected "
                               "'websocket.accept', 'websocket.close' or 'websocket.http.response.start')")

    async def _send_denial_body(self, kind: str, message: dict) -> None:
        if kind != "websocket.http.response.body":
            raise RuntimeError(f"ASGI: {kind!r} sent during a denial response (expected "
                               "'websocket.http.response.body')")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"ASGI: 'body' must be bytes, got {type(body).__name__}")
        more = bool(message.get("more_body", False))
        if not more:
            self.complete = True
        await self.session.send_data(self, bytes(body), not more)
        if not more:
            self.end_sent = self.end_pending = True
            self._denied()

    def _denied(self) -> None:
        """A denial response went out whole: the stream ends (RST_STREAM NO_ERROR: the client's side of a
        CONNECT stream stays open otherwise; RFC 9113 section 8.1)."""
        self.state = CLOSED
        self._log_access()
        if self.ended:
            self._forget()
        else:
            self.session._reset(self, ErrorCodes.NO_ERROR)

    def _accept(self, message: dict) -> None:
        headers = _header_list(message.get("headers"), "websocket.accept")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if subprotocol not in self.scope["subprotocols"]:
                raise RuntimeError(f"ASGI: cannot accept the WebSocket: unexpected subprotocol {subprotocol!r}")
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        extensions = []
        if self.config.ws_per_message_deflate:
            offers = [offer for name, value in self.scope["headers"] if name == b"sec-websocket-extensions"
                      for offer in split_comma_header(value)]
            if offers:
                deflate = BoundedDeflate(self.config.ws_max_size)
                accepted = server_extensions_handshake(offers, [deflate])
                if accepted is not None:
                    headers.append((b"sec-websocket-extensions", accepted))
                    extensions.append(deflate)
        try:
            headers = response_fields(headers)
        except ValueError as exc:
            raise RuntimeError(f"ASGI: cannot accept the WebSocket: {exc}") from None
        self._respond(200, headers, False)
        self.ws = Connection(ConnectionType.SERVER, extensions=extensions)
        self.fast_send = not extensions  # (data frames need no wsproto state: built in C)
        self.state = OPEN
        self._log_access()
        self._schedule_ping()
        if self.shutting_down:
            self._close(1001, "server shutting down")
        if self.body or self.ended:
            self._feed()

    # -- ending ------------------------------------------------------------------------------------------------

    def _on_app_done(self, task) -> None:
        exc = self._app_outcome(task)
        state = self.state
        if state == CONNECTING and not self.gone:
            if exc is None and not task.cancelled():
                logger.error("ASGI callable returned without accepting or closing the WebSocket.")
            if exc is not None or task.cancelled():
                self.headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"22")]
                self._respond(500, self.headers, False)
                self.session.h2.send_data(self.id, b"Internal Server Error\n", end_stream=True)
                self.end_sent = self.end_pending = True
            else:
                self._respond(403, [], True)
            self._denied()
        elif state == RESPONDING and not self.gone:
            self.session._reset(self, ErrorCodes.INTERNAL_ERROR)  # never a cut denial taken for a whole one
        elif state == OPEN:
            self._close(1011 if exc is not None or task.cancelled() else 1000, "")
        if self.state == CLOSED or self.gone:
            self.pool.websockets.discard(self)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket (RFC 6455 section 7.1.7): our close frame, then END_STREAM (the socket's SHUT_WR
        over HTTP/1.1); what still comes is dropped until the client ends its side, or --ws-close-timeout."""
        self._fail_close_frame(code, reason)
        self.end_pending = True
        self._pump()
        if self.close_timer is None and not self.gone:
            self.close_timer = self.loop.call_later(self.config.ws_close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self.close_timer = None
        self._set_disconnect(1006, "")
        if not self.gone:
            self.session._reset(self, ErrorCodes.CANCEL)

    def _finish(self) -> None:
        """The WebSocket is over: END_STREAM after what is still to send; the client's END_STREAM is awaited
        for at most --ws-close-timeout, then the stream is reset."""
        self._stop_timers()
        self.state = CLOSED
        self._uncount()  # (over, as an HTTP/1.1 one whose socket closes here; the stream may wait for END_STREAM)
        if self.disconnect is None:
            self._set_disconnect(1006, "")
        if not self.gone:
            self.end_pending = True
            self._pump()
            if not self.gone and self.sock is not None:
                self.end_timer = self.loop.call_later(self.config.ws_close_timeout, self._end_timed_out)
        if self.task is None or self.task.done():
            self.pool.websockets.discard(self)

    def _end_timed_out(self) -> None:
        self.end_timer = None
        if not self.gone and self.sock is not None:
            self.session._reset(self, ErrorCodes.NO_ERROR if self.end_sent else ErrorCodes.CANCEL)

    def _stop_timers(self) -> None:
        self._cancel_pings()
        for name in ("close_timer", "open_timer", "end_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)

    def _uncount(self) -> None:
        """The lifecycle collector hears the WebSocket's end once, whichever ending comes first: the close
        handshake done (_finish) or the stream gone (_forget: reset, connection lost, denial, shutdown)."""
        if self.counted:
            self.counted = False
            self.server.lifecycle_ws_closed(self.session.fd, self.id)

    def _forget(self) -> None:
        """Both sides ended (or the stream is gone): the session forgets the stream."""
        if self.sock is None:
            return
        self.sock = None
        self._stop_timers()
        session = self.session
        self._uncount()
        if session.streams.get(self.id) is self:
            del session.streams[self.id]
            session._release_body(self)
            session._maybe_idle()
        if self.task is None or self.task.done():
            self.pool.websockets.discard(self)
