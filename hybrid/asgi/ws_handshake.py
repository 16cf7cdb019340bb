"""A WebSocket's opening handshake in the pool: wsproto checks the upgrade request, the app accepts it (101),
closes it (403) or denies it with its own HTTP response (the ``websocket.http.response`` extension); an app that
decides nothing within ``--ws-open-timeout`` gets a 500.

A mixin of ``WebSocketSession`` (hybrid/asgi/websocket.py), which holds the state these methods use.
"""

from __future__ import annotations

import logging

from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as WSRequest
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from hybrid.asgi.ws_deflate import BoundedDeflate
from hybrid.asgi.ws_scope import request_head
from hybrid.asgi.ws_states import CLOSED, CONNECTING, OPEN, RESPONDING

logger = logging.getLogger("hybrid.error")


def _header_list(headers, what: str) -> list:
    try:
        return [(bytes(name).lower(), bytes(value)) for name, value in headers or ()]
    except (TypeError, ValueError):
        raise TypeError(f"ASGI: '{what}' headers must be an iterable of [name, value] byte pairs") from None


class WebSocketHandshake:
    """Start, accept or deny: everything before the WebSocket is OPEN (or CLOSED without ever opening)."""

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

    def _send_handshake(self, kind: str, message: dict) -> None:
        """The app's message while CONNECTING: accept, close (a 403) or the head of a denial response."""
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

    async def _send_denial_body(self, kind: str, message: dict) -> None:
        """The app's message while RESPONDING: the body of its denial response."""
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
