"""How a WebSocket ends: the close handshake (bounded by ``--ws-close-timeout``), failing the connection on a
protocol error (RFC 6455 section 7.1.7), a lost peer (1006), server shutdown (1001), and the socket's close (there
is no keep-alive after a WebSocket).

A mixin of ``WebSocketSession`` (hybrid/asgi/websocket.py), which holds the state these methods use.
"""

from __future__ import annotations

import asyncio
import socket

from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from hybrid.asgi.ws_states import CLOSED, CLOSING, OPEN


class WebSocketClosing:
    """Close, fail, lose, shut down, finish."""

    def _close(self, code: int, reason: str) -> None:
        """Start the close handshake: our close frame now, the peer's answer within --ws-close-timeout."""
        if self.state != OPEN:
            return
        if self.outbox:
            self._flush_outbox()  # messages other loops sent before the close go out before it (crossloop.py)
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

    def _fail_close_frame(self, code: int, reason: str) -> None:
        """The transport-independent half of failing (RFC 6455 section 7.1.7): the app's disconnect, no more pings,
        our close frame with ``code``, no more parsing. ``_fail`` then ends the transport's side (over HTTP/2 too,
        hybrid/h2/websocket.py)."""
        self._set_disconnect(code, reason)
        self._cancel_pings()
        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            try:
                self._write(self.ws.send(CloseConnection(code=code, reason=reason[:120] or None)))
            except WSLocalProtocolError:
                pass
        self.state = CLOSING
        self.failed = True

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): a close frame with ``code``, no more parsing; the socket
        closes as soon as the peer closes its side (it sees our FIN), or after --ws-close-timeout."""
        self._fail_close_frame(code, reason)
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
