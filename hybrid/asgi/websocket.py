"""ASGI WebSocket (spec 2.4) for one connection, over wsproto, served by the AsyncPool on a SocketStream.

A worker's H1Protocol (built with ``websocket=True``, i.e. ``--ws wsproto``) flags a WebSocket upgrade request;
``Connection._start`` hands the socket to the pool as a ``WebSocketHandoff`` before any app code runs, and the pool
drives one ``WebSocketSession``: wsproto sees the request head again (rebuilt from the parsed Request), the app runs
as a C Task stepping a ``TimedCoroutine`` (every step timed, like the pool's HTTP streams), and the socket is closed
when the WebSocket is done: there is no keep-alive after a WebSocket.

This file holds the session's state, the app's ``receive``/``send`` and the outgoing messages. The rest, one concept
a file, are mixins of the session: ws_handshake.py (start, accept, deny), ws_reader.py (the message loop: frames in),
ws_close.py (close handshake, failure, shutdown, the socket's end), ws_keepalive.py (pings); ws_states.py names the
states (CONNECTING -> RESPONDING or OPEN -> CLOSING -> CLOSED) and ws_deflate.py bounds permessage-deflate.

Protocol errors close with the code wsproto reports (1002, or 1007 for invalid UTF-8): the close frame goes out,
the write side is shut down and the socket closes once the peer closes its side (bounded). A message larger than
``--ws-max-size`` closes with 1009; keepalive pings every ``--ws-ping-interval`` seconds close a peer that does not
answer within ``--ws-ping-timeout`` with 1011; server shutdown closes every open WebSocket with 1001.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from threading import get_ident

import wsproto.frame_protocol
from wsproto import ConnectionType, WSConnection
from wsproto.events import BytesMessage, RejectConnection, RejectData, TextMessage
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from hybrid._speedups.outbox import Outbox
from hybrid._speedups.streams import SocketStream, StreamClosed
from hybrid._speedups.wsframe import FrameReader, encode_frame, frame_header
from hybrid._speedups.wsmask import XorMasker
from hybrid.asgi.crossloop import CrossLoopSend, on_owner_loop
from hybrid.asgi.errors import log_app_exception
from hybrid.asgi.http import ClientDisconnected
from hybrid.asgi.ws_close import WebSocketClosing
from hybrid.asgi.ws_handshake import WebSocketHandshake
from hybrid.asgi.ws_keepalive import WebSocketKeepalive
from hybrid.asgi.ws_reader import WebSocketReader
from hybrid.asgi.ws_scope import build_websocket_scope, request_head  # noqa: F401 (connection.pyx imports it here)
from hybrid.asgi.ws_states import CLOSED, CONNECTING, OPEN, QUEUE_HIGH, RESPONDING, WRITE_HIGH_WATER
from hybrid.logs import log_websocket_access
from hybrid.mailbox import Mailbox

# Unmasking every client frame in Python was a quarter of the CPU per 64 KiB message: wsproto looks this name up
# each time a frame starts, so the compiled masker (same interface) takes its place.
wsproto.frame_protocol.XorMaskerSimple = XorMasker

logger = logging.getLogger("hybrid.error")

SMALL_FRAME = 4096      # up to this payload a frame goes out as one joined bytes; above it, header + payload


class WebSocketSession(WebSocketHandshake, WebSocketReader, WebSocketClosing, WebSocketKeepalive, CrossLoopSend):
    """One WebSocket connection in the pool: the wsproto protocol, the ASGI receive/send, the app's task."""

    in_pool = True  # (shutdown waits for worker connections, then drains the pool's)

    def __init__(self, pool, handoff) -> None:
        self.pool = pool
        self.server = pool.server
        self.config = pool.config
        self.loop = pool.loop
        self.thread = get_ident()  # the pool loop's: app code on another loop is marshalled here (crossloop.py)
        self.outbox = Outbox()  # data messages sent from other loops, not yet written (crossloop.py)
        if pool.h2_inbox is None:  # (what other threads post to the pool's loop: the outbox's wake-up)
            pool.h2_inbox = Mailbox(self.loop)
        self.sock = handoff.sock
        self.request = handoff.request
        self.client_addr = handoff.client
        self.server_addr = handoff.server
        self.scope = handoff.scope
        self.scope["state"] = pool.state.copy()
        # Bytes that came after the request head are the first of the stream (frames a client sent early).
        self.stream = SocketStream(handoff.sock, pool.loop, bytes(handoff.trailing or b""))
        self.frames = FrameReader(self.stream, self.config.ws_max_size)
        self.fast_send = False                 # data frames go out without wsproto (no extension in use)
        self.ws = WSConnection(ConnectionType.SERVER)
        self.state = CONNECTING
        self.status = 0
        self.task = None
        self.reader = None
        self.incoming: deque = deque()
        self.waiter: asyncio.Future | None = None   # the app, waiting in receive()
        self.room: asyncio.Future | None = None     # the reader, waiting for the app to take messages
        self.connect_delivered = False
        self.disconnect: dict | None = None    # the websocket.disconnect message, once there is one
        self.parts: list = []                  # fragments of the message being received
        self.size = 0
        self.discarding = False                # after a close we started: data frames are dropped
        self.failed = False                    # the protocol failed: parsing stopped, bytes are discarded
        self.shutting_down = False
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.close_timer: asyncio.TimerHandle | None = None

    # -- the app ---------------------------------------------------------------------------------------------

    async def receive(self) -> dict:
        if get_ident() != self.thread:
            return await on_owner_loop(self.loop, self.receive())
        if not self.connect_delivered:
            self.connect_delivered = True
            return {"type": "websocket.connect"}
        while True:
            if self.incoming:
                message = self.incoming.popleft()
                room = self.room
                if room is not None and not room.done() and len(self.incoming) < QUEUE_HIGH // 2:
                    room.set_result(None)  # the reader waits for the app to catch up: read on
                return message
            if self.disconnect is not None:
                return self.disconnect
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def send(self, message: dict) -> None:
        if get_ident() != self.thread:  # a broadcast from a route on another loop (crossloop.py)
            if self._hand_over(message):
                return
            return await on_owner_loop(self.loop, self.send(message))
        if self.outbox:
            self._flush_outbox()  # what other loops sent before goes first
        kind = message["type"]
        state = self.state
        if state == OPEN:
            if kind == "websocket.send":
                await self._send_message(message)
            elif kind == "websocket.close":
                self._close(message.get("code") or 1000, message.get("reason") or "")
            else:
                raise RuntimeError(f"ASGI: unexpected {kind!r} on an open WebSocket (expected 'websocket.send' "
                                   "or 'websocket.close')")
        elif state == CONNECTING:
            self._send_handshake(kind, message)
        elif state == RESPONDING:
            await self._send_denial_body(kind, message)
        else:  # CLOSING or CLOSED
            if kind in ("websocket.send", "websocket.close") and self.status == 101:
                if kind == "websocket.close":
                    return  # the connection is already closing or closed: nothing more to say
                raise ClientDisconnected("the WebSocket is closed")
            if kind.startswith("websocket.http.response") or kind in ("websocket.accept", "websocket.close"):
                raise RuntimeError(f"ASGI: {kind!r} sent after the response was complete")
            raise RuntimeError(f"ASGI: unexpected {kind!r} after the WebSocket was closed")

    async def _send_message(self, message: dict) -> None:
        text = message.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"ASGI: 'text' must be str, got {type(text).__name__}")
            first, data = 0x81, text
        else:
            data = message.get("bytes")
            if data is None:
                raise ValueError("ASGI: 'websocket.send' needs 'text' or 'bytes'")
            if type(data) is not bytes:
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise TypeError(f"ASGI: 'bytes' must be bytes, got {type(data).__name__}")
                data = bytes(data)
            first = 0x82
        if self.fast_send:
            if self._send_frame(first, text.encode("utf-8") if first == 0x81 else data) > WRITE_HIGH_WATER:
                await self._drain()
            return
        if not self._write(self.ws.send(TextMessage(data=text) if first == 0x81 else BytesMessage(data=data))):
            self._lost()
            raise ClientDisconnected("the WebSocket peer went away")
        await self._drain()

    def _send_frame(self, first: int, payload: bytes) -> int:
        """One whole message as one frame, built in C (wsproto would copy the payload several times); returns the
        bytes now buffered. Sending data frames changes no wsproto state, so it stays right about what may be sent
        next. Not a coroutine: most messages go out at once and need no drain."""
        if self.sock is not None:
            try:
                if len(payload) <= SMALL_FRAME:
                    return self.stream.write(encode_frame(first, payload))
                return self.stream.writelines((frame_header(first, len(payload)), payload))
            except (StreamClosed, OSError):
                pass
        self._lost()
        raise ClientDisconnected("the WebSocket peer went away")

    def _unsent(self) -> int:
        """Bytes of ours not yet handed to the kernel (read from other threads too: crossloop.py)."""
        return self.stream.write_buffer_size()

    async def _drain(self) -> None:
        if self.stream.write_buffer_size() > WRITE_HIGH_WATER:
            try:
                await self.stream.drain()
            except (StreamClosed, OSError) as exc:
                self._lost()
                raise ClientDisconnected(f"the WebSocket peer went away: {exc}") from None

    def _app_outcome(self, task):
        """The app's task ended: forget it, log what it raised (a disconnect is not the app's error); the
        exception, or None (over HTTP/2 too, hybrid/h2/websocket.py)."""
        self.pool.tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, ClientDisconnected):
            log_app_exception(logger, exc)
        return exc

    def _on_app_done(self, task) -> None:
        exc = self._app_outcome(task)
        state = self.state
        if state == CONNECTING:
            if exc is None and not task.cancelled():
                logger.error("ASGI callable returned without accepting or closing the WebSocket.")
            self.status = 500 if exc is not None or task.cancelled() else 403
            body = b"Internal Server Error\n" if self.status == 500 else b""
            headers = self._response_headers([(b"content-type", b"text/plain; charset=utf-8")])
            try:
                self._write(self.ws.send(RejectConnection(status_code=self.status, headers=headers,
                                                          has_body=True)))
                self._write(self.ws.send(RejectData(data=body, body_finished=True)))
            except WSLocalProtocolError:
                pass
            self.state = CLOSED
            self._log_access()
            self._finish()
        elif state == RESPONDING:
            self._finish()  # an incomplete denial response: the client must not take it for a whole one
        elif state == OPEN:
            self._close(1011 if exc is not None or task.cancelled() else 1000, "")
        if self.state == CLOSED:
            self.pool.websockets.discard(self)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _write(self, data) -> bool:
        if not data or self.sock is None:
            return self.sock is not None
        try:
            self.stream.write(data)
        except (StreamClosed, OSError):
            return False
        return True

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _log_access(self) -> None:
        if self.server.access_log:
            log_websocket_access(self)
