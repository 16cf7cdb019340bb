"""ASGI WebSocket (spec 2.4) for one connection, over wsproto, served by the AsyncPool on a SocketStream.

A worker's H1Protocol (built with ``websocket=True``, i.e. ``--ws wsproto``) flags a WebSocket upgrade request;
``Connection._start`` hands the socket to the pool as a ``WebSocketHandoff`` before any app code runs, and the pool
drives one ``WebSocketSession``: wsproto sees the request head again (rebuilt from the parsed Request), the app runs
as a C Task stepping a ``TimedCoroutine`` (every step timed, like the pool's HTTP streams), and the socket is closed
when the WebSocket is done: there is no keep-alive after a WebSocket.

States: CONNECTING (the app has ``websocket.connect``; it may accept, close, which answers 403, or send a denial
response with ``websocket.http.response.start``/``.body``) -> RESPONDING (denial body being sent) or OPEN ->
CLOSING (a close frame went out, the peer's answer is awaited for at most ``--ws-close-timeout``) -> CLOSED.

Whole uncompressed data frames are parsed and built in C (``hybrid/_speedups/wsframe.pyx``, in the stream's read
buffer); every other frame goes to wsproto as it came, so wsproto keeps the protocol's state and its errors.

Protocol errors close with the code wsproto reports (1002, or 1007 for invalid UTF-8): the close frame goes out,
the write side is shut down and the socket closes once the peer closes its side (bounded). A message larger than
``--ws-max-size`` closes with 1009; keepalive pings every ``--ws-ping-interval`` seconds close a peer that does not
answer within ``--ws-ping-timeout`` with 1011; server shutdown closes every open WebSocket with 1001.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from threading import get_ident

import wsproto.frame_protocol
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as WSRequest
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from hybrid._speedups.streams import SocketStream, StreamClosed
from hybrid._speedups.wsframe import BINARY, NEED, PASS, FrameReader, encode_frame, frame_header
from hybrid._speedups.wsmask import XorMasker
from hybrid.asgi.crossloop import on_owner_loop
from hybrid.asgi.errors import log_app_exception
from hybrid.asgi.http import ClientDisconnected
from hybrid.asgi.ws_deflate import BoundedDeflate
from hybrid.asgi.ws_scope import build_websocket_scope, request_head  # noqa: F401 (connection.py imports it here)
from hybrid.logs import log_websocket_access

# Unmasking every client frame in Python was a quarter of the CPU per 64 KiB message: wsproto looks this name up
# each time a frame starts, so the compiled masker (same interface) takes its place.
wsproto.frame_protocol.XorMaskerSimple = XorMasker

logger = logging.getLogger("hybrid.error")

QUEUE_HIGH = 32         # received messages waiting for the app before reading pauses (backpressure)
WRITE_HIGH_WATER = 65536
SMALL_FRAME = 4096      # up to this payload a frame goes out as one joined bytes; above it, header + payload

CONNECTING, RESPONDING, OPEN, CLOSING, CLOSED = range(5)


def _header_list(headers, what: str) -> list:
    try:
        return [(bytes(name).lower(), bytes(value)) for name, value in headers or ()]
    except (TypeError, ValueError):
        raise TypeError(f"ASGI: '{what}' headers must be an iterable of [name, value] byte pairs") from None


class WebSocketSession:
    """One WebSocket connection in the pool: the wsproto protocol, the ASGI receive/send, the app's task."""

    in_pool = True  # (shutdown waits for worker connections, then drains the pool's)

    def __init__(self, pool, handoff) -> None:
        self.pool = pool
        self.server = pool.server
        self.config = pool.config
        self.loop = pool.loop
        self.thread = get_ident()  # the pool loop's: app code on another loop is marshalled here (crossloop.py)
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

    # -- start -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.ws.receive_data(request_head(self.request))
            event = next(iter(self.ws.events()), None)
        except WSRemoteProtocolError as exc:
            hint = exc.event_hint if isinstance(exc.event_hint, RejectConnection) else RejectConnection()
            self._reject_handshake(hint, str(exc))
            return
        if not isinstance(event, WSRequest):
            self._reject_handshake(RejectConnection(), "incomplete WebSocket handshake")
            return
        self.server.requests += 1
        self.pool.websockets.add(self)
        self.task = self.pool.start_app(self.scope, self.receive, self.send, self, self._on_app_done)
        # The client waits for 101 (or a denial) while the app decides; an app that never does must not hold
        # the connection (and its task) forever.
        self.loop.call_later(self.config.ws_open_timeout, self._open_timed_out)

    def _open_timed_out(self) -> None:
        task = self.task
        if self.state == CONNECTING and task is not None and not task.done():
            logger.warning("WebSocket %s: the app neither accepted nor closed within %g s (--ws-open-timeout); "
                           "answered 500.", self.scope["path"], self.config.ws_open_timeout)
            task.cancel()

    def _reject_handshake(self, event: RejectConnection, why: str) -> None:
        """wsproto refused the handshake (no key, wrong version, ...): its status, and close."""
        logger.debug("WebSocket handshake refused: %s", why)
        headers = list(event.headers)
        self._server_headers(headers)
        headers.append((b"connection", b"close"))
        try:
            data = self.ws.send(RejectConnection(status_code=event.status_code or 400, headers=headers))
        except Exception:  # noqa: BLE001 - h11 itself refused the bytes: a plain 400
            data = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        self.status = event.status_code or 400
        self._write(data)
        self._log_access()
        self._finish()

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
        if get_ident() != self.thread:  # a broadcast from a route on another loop
            return await on_owner_loop(self.loop, self.send(message))
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
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                # Closing before the handshake is accepted denies it: HTTP 403 (ASGI spec).
                self.status = 403
                self._write(self.ws.send(RejectConnection(
                    status_code=403, headers=self._response_headers([]), has_body=False)))
                self.state = CLOSED
                self._log_access()
                self._finish()
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not isinstance(status, int) or not 100 <= status <= 599:
                    raise ValueError(f"ASGI: invalid status {status!r} in 'websocket.http.response.start'")
                headers = self._response_headers(_header_list(message.get("headers"), kind))
                self.status = status
                self._write(self.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True)))
                self.state = RESPONDING
            else:
                raise RuntimeError(f"ASGI: {kind!r} sent before the WebSocket was accepted (expected "
                                   "'websocket.accept', 'websocket.close' or 'websocket.http.response.start')")
        elif state == RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"ASGI: {kind!r} sent during a denial response (expected "
                                   "'websocket.http.response.body')")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError(f"ASGI: 'body' must be bytes, got {type(body).__name__}")
            more = message.get("more_body", False)
            self._write(self.ws.send(RejectData(data=bytes(body), body_finished=not more)))
            if not more:
                self.state = CLOSED
                self._log_access()
                self._finish()
            else:
                await self._drain()
        else:  # CLOSING or CLOSED
            if kind in ("websocket.send", "websocket.close") and self.status == 101:
                if kind == "websocket.close":
                    return  # the connection is already closing or closed: nothing more to say
                raise ClientDisconnected("the WebSocket is closed")
            if kind.startswith("websocket.http.response") or kind in ("websocket.accept", "websocket.close"):
                raise RuntimeError(f"ASGI: {kind!r} sent after the response was complete")
            raise RuntimeError(f"ASGI: unexpected {kind!r} after the WebSocket was closed")

    def _response_headers(self, headers: list) -> list:
        self._server_headers(headers)
        if not any(name == b"connection" for name, _ in headers):
            headers.append((b"connection", b"close"))
        return headers

    def _server_headers(self, headers: list) -> None:
        """The server's own lines after the app's, as on HTTP responses: --header's (a 'server' one replaces
        hybrid's), then 'server: hybrid' unless the app or --header named one."""
        server = self.server
        if server.server_header and not any(name == b"server" for name, _ in headers):
            headers.append((b"server", b"hybrid"))
        headers.extend(server.extra_header_pairs)

    def _accept(self, message: dict) -> None:
        headers = _header_list(message.get("headers"), "websocket.accept")
        self._server_headers(headers)
        subprotocol = message.get("subprotocol")
        extensions = [BoundedDeflate(self.config.ws_max_size)] if self.config.ws_per_message_deflate else []
        try:
            data = self.ws.send(AcceptConnection(subprotocol=subprotocol, extensions=extensions,
                                                 extra_headers=headers))
        except WSLocalProtocolError as exc:
            raise RuntimeError(f"ASGI: cannot accept the WebSocket: {exc}") from None
        self.status = 101
        self.state = OPEN
        self.fast_send = not any(ext.enabled() for ext in extensions)
        self._log_access()
        if not self._write(data):
            self._lost()
            return
        self.reader = self.loop.create_task(self._read_loop())
        self._schedule_ping()
        if self.shutting_down:
            self._close(1001, "server shutting down")

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

    async def _drain(self) -> None:
        if self.stream.write_buffer_size() > WRITE_HIGH_WATER:
            try:
                await self.stream.drain()
            except (StreamClosed, OSError) as exc:
                self._lost()
                raise ClientDisconnected(f"the WebSocket peer went away: {exc}") from None

    def _on_app_done(self, task) -> None:
        self.pool.tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, ClientDisconnected):
            log_app_exception(logger, exc)
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

    # -- reading ---------------------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        stream = self.stream
        frames = self.frames
        try:
            while self.state != CLOSED:
                if stream.write_buffer_size() > WRITE_HIGH_WATER:
                    # A peer that does not read our output is not read either: every Ping read would buffer one
                    # more Pong (a never-reading ping flood grew memory without bound). The app's sends wait
                    # in the same drain.
                    await stream.drain()
                while len(self.incoming) >= QUEUE_HIGH and self.state == OPEN:
                    self.room = self.loop.create_future()  # receive() wakes it when there is room
                    try:
                        await self.room
                    finally:
                        self.room = None
                if self.state == OPEN:
                    # Whole unfragmented messages are parsed in C in the stream's buffer; other frames go to
                    # wsproto as they are. Once closing, everything does (the plain read below).
                    kind = frames.next()
                    if kind == NEED:
                        if await stream.fill(frames.want) >= frames.want:
                            continue
                        # EOF inside a frame: the plain read hands wsproto what is left, then the EOF.
                    elif kind == PASS:
                        payload = frames.payload
                        if self.incoming:
                            # Let the app take (and answer) the messages before this frame first: if the frame
                            # fails the connection, the peer still gets what was due (Autobahn's strict order).
                            await asyncio.sleep(0)
                        self._receive(payload)
                        continue
                    else:
                        if not self.discarding:
                            self.incoming.append({"type": "websocket.receive", "bytes": frames.payload}
                                                 if kind == BINARY else
                                                 {"type": "websocket.receive", "text": frames.payload})
                            self._wake()
                        continue
                data = await stream.read()
                if self.failed:
                    if not data:
                        break
                    continue  # the protocol failed: what still comes is dropped until the peer closes
                self._receive(data or None)
                if not data:
                    break
        except (StreamClosed, OSError):
            pass
        except asyncio.CancelledError:
            return
        finally:
            self.reader = None
        if self.state != CLOSED or self.sock is not None:
            self._set_disconnect(1006, "")
            self._finish()

    def _receive(self, data: bytes | None) -> None:
        ws = self.ws
        try:
            ws.receive_data(data)
        except WSLocalProtocolError:  # closed already
            return
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                self._on_data(event, kind is TextMessage)
            elif kind is Ping:
                if ws.state == ConnectionState.OPEN:
                    self._write(ws.send(event.response()))
            elif kind is Pong:
                self._on_pong()
            elif kind is CloseConnection:
                self._on_close(event)
                return

    def _on_data(self, event, text: bool) -> None:
        if self.discarding or self.state != OPEN:
            return
        data = event.data
        self.size += len(data) if not text or data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        if self.size > self.config.ws_max_size:
            self.parts.clear()
            self.size = 0
            self._set_disconnect(1009, "message too big")
            self._close(1009, "message too big")
            return
        if not event.message_finished:
            self.parts.append(data)
            return
        if self.parts:
            self.parts.append(data)
            data = ("" if text else b"").join(self.parts)
            self.parts.clear()
        self.size = 0
        self.incoming.append({"type": "websocket.receive", "text": data} if text else
                             {"type": "websocket.receive", "bytes": bytes(data)})
        self._wake()

    def _on_close(self, event: CloseConnection) -> None:
        ws_state = self.ws.state
        if ws_state == ConnectionState.REMOTE_CLOSING:
            # The peer starts the close handshake: answer with its code, then close the TCP connection.
            self._write(self.ws.send(event.response()))
            self._set_disconnect(event.code, event.reason or "")
            self.state = CLOSED
            self._finish()
        elif ws_state == ConnectionState.CLOSED:
            # The answer to our close (or the connection was lost: 1006).
            self._set_disconnect(event.code, event.reason or "")
            self.state = CLOSED
            self._finish()
        else:
            # wsproto could not parse the input (1002, 1007 for invalid UTF-8, ...): fail the connection.
            self._fail(event.code, event.reason or "")

    # -- closing ---------------------------------------------------------------------------------------------

    def _close(self, code: int, reason: str) -> None:
        """Start the close handshake: our close frame now, the peer's answer within --ws-close-timeout."""
        if self.state != OPEN:
            return
        self.state = CLOSING
        self.discarding = True
        self._cancel_pings()
        try:
            data = self.ws.send(CloseConnection(code=code, reason=reason or None))
        except WSLocalProtocolError:
            data = b""
        if not self._write(data):
            self._lost()
            return
        self.close_timer = self.loop.call_later(self.config.ws_close_timeout, self._close_timed_out)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): a close frame with ``code``, no more parsing; the socket
        closes as soon as the peer closes its side (it sees our FIN), or after --ws-close-timeout."""
        self._set_disconnect(code, reason)
        self._cancel_pings()
        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            try:
                self._write(self.ws.send(CloseConnection(code=code, reason=reason[:120] or None)))
            except WSLocalProtocolError:
                pass
        self.state = CLOSING
        self.failed = True
        if not self.stream.write_buffer_size() and self.sock is not None:
            try:
                # The plain socket's shutdown: SSLSocket.shutdown() would drop the TLS session, and later reads
                # would hand ciphertext to the WebSocket parser.
                socket.socket.shutdown(self.sock, socket.SHUT_WR)
            except OSError:
                pass
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.config.ws_close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self.close_timer = None
        self._set_disconnect(1006, "")
        self.state = CLOSED
        self.stream.abort()
        self._finish()

    def _lost(self) -> None:
        self._set_disconnect(1006, "")
        self.state = CLOSED
        self._finish()

    def shutdown(self) -> None:
        """Server shutdown: close with 1001 (Going Away); the app gets its disconnect now and must return."""
        self.shutting_down = True
        if self.state == OPEN:
            self._set_disconnect(1001, "server shutting down")
            self._close(1001, "server shutting down")
        task = self.task
        if task is not None and not task.done():
            self.loop.call_later(self.config.ws_close_timeout, task.cancel)

    def _set_disconnect(self, code: int, reason: str) -> None:
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": int(code), "reason": reason}
        self._wake()

    def _finish(self) -> None:
        """The WebSocket is over: stop timers and the reader, flush and close the socket (no keep-alive)."""
        self._cancel_pings()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self.state = CLOSED
        if self.disconnect is None:
            self._set_disconnect(1006, "")
        reader = self.reader
        if reader is not None and reader is not asyncio.current_task(self.loop):
            reader.cancel()
            self.reader = None
        if self.sock is not None:
            if self.server.lifecycle is not None:
                self.server.lifecycle_closed(self.sock.fileno())
            self.sock = None
            self.server.forget(self)
            self.pool.close_later(self.stream)
        if self.task is None or self.task.done():
            self.pool.websockets.discard(self)

    # -- keepalive -------------------------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        interval = self.config.ws_ping_interval
        if interval and self.state == OPEN:
            self.ping_timer = self.loop.call_later(interval, self._ping)

    def _ping(self) -> None:
        self.ping_timer = None
        if self.state != OPEN or self.ws.state != ConnectionState.OPEN:
            return
        if not self._write(self.ws.send(Ping(payload=os.urandom(4)))):
            self._lost()
            return
        timeout = self.config.ws_ping_timeout
        if timeout:
            self.pong_timer = self.loop.call_later(timeout, self._ping_timed_out)
        else:
            self._schedule_ping()

    def _on_pong(self) -> None:
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self._schedule_ping()

    def _ping_timed_out(self) -> None:
        self.pong_timer = None
        if self.state == OPEN:
            self._fail(1011, "keepalive ping timeout")

    def _cancel_pings(self) -> None:
        for timer in (self.ping_timer, self.pong_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self.pong_timer = None

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
