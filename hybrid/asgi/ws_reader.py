"""A WebSocket's incoming side: the reader task that turns frames into ``websocket.receive`` messages.

Whole uncompressed data frames are parsed in C in the stream's read buffer (``hybrid/_speedups/wsframe.pyx``);
every other frame goes to wsproto as it came, so wsproto keeps the protocol's state, its errors and their close
codes. Fragments are joined; reading pauses while ``QUEUE_HIGH`` messages wait for the app and while our own
output waits for a peer that does not read.

A mixin of ``WebSocketSession`` (hybrid/asgi/websocket.py), which holds the state these methods use.
"""

from __future__ import annotations

import asyncio

from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from hybrid._speedups.streams import StreamClosed
from hybrid._speedups.wsframe import BINARY, NEED, PASS
from hybrid.asgi.ws_states import CLOSED, OPEN, QUEUE_HIGH, WRITE_HIGH_WATER


class WebSocketReader:
    """The message loop: read, parse, queue for ``receive()``; answer pings; take the peer's close."""

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
