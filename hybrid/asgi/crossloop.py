"""A WebSocket's ``send``/``receive`` called by app code running on another loop than the connection's.

The broadcast pattern (FastAPI's ``ConnectionManager``): a route keeps every open WebSocket in a module-level
list and sends to each. Under hybrid the WebSockets live on the async pool's loop while a plain ``POST`` route runs
on a serving thread's: the session's futures, timers and stream belong to the pool's loop and are not thread-safe.
The session checks the thread first; on the owner's thread that check is all this costs.

A data message (``websocket.send`` on an open connection) is handed over without a round trip: checked and
encoded on the caller's side, put in the connection's ``Outbox`` (hybrid/_speedups/outbox.pyx) and written by the
pool's loop, which the pool's ``Mailbox`` wakes once for a burst (a broadcast to every connection in one step of
the route). The caller goes on at once, as when a send's bytes fit the socket's buffers. What that keeps:

- order: the owner's loop writes what was handed over before any later message of its own (``send`` and the close
  flush the outbox first), and senders append in the order they send;
- backpressure: when the bytes handed over and not yet written plus the connection's unsent output would pass its
  high-water mark, the caller takes the round trip below, whose send waits for the reader as on the owner's loop;
- errors: a message of a wrong type or shape (and any other message: accept, close, a closed connection) takes the
  round trip, so it raises to the caller as before. A message handed over to a connection that closes before the
  pool writes it is dropped, as bytes in the kernel's buffer of a connection the peer already left.

Anything else, and ``receive`` (it must wait anyway), runs on the owner's loop (``run_coroutine_threadsafe``) and
the caller awaits it on its own loop: two thread hand-offs.
"""

from __future__ import annotations

import asyncio

from wsproto.events import BytesMessage, TextMessage
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

from hybrid.asgi.http import ClientDisconnected
from hybrid.asgi.ws_states import OPEN, WRITE_HIGH_WATER


async def on_owner_loop(loop: asyncio.AbstractEventLoop, coro):
    """Run ``coro`` on ``loop`` and return (or raise) what it does, awaited on the calling loop."""
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the owner's loop is closed: its connections are gone
        coro.close()
        raise ClientDisconnected("the WebSocket's event loop has stopped") from None
    return await asyncio.wrap_future(future)


class CrossLoopSend:
    """Mixin of ``WebSocketSession`` (over HTTP/2 too): the hand-over of data messages from other loops. The
    session provides ``outbox``, ``state``, ``fast_send``, ``ws``, ``_send_frame``, ``_write``, ``_lost`` and
    ``_unsent`` (its output not yet written)."""

    def _hand_over(self, message) -> bool:
        """On the caller's thread: True when ``message`` is queued for the owner's loop; False when it must take
        the round trip (not a data message on an open connection, not of the expected types, or over the mark)."""
        if self.state != OPEN or message.get("type") != "websocket.send":
            return False
        outbox = self.outbox
        waiting = outbox.size + self._unsent()
        text = message.get("text")
        if text is not None:
            if type(text) is not str or waiting + len(text) > WRITE_HIGH_WATER:  # (not encoded twice when over)
                return False
            payload = text.encode("utf-8")  # (a lone surrogate raises here, as it would on the owner's loop)
        else:
            payload = message.get("bytes")
            if type(payload) is not bytes:
                if not isinstance(payload, (bytearray, memoryview)):
                    return False
                payload = bytes(payload)  # a copy now: the caller may reuse its buffer once send returns
        if waiting + len(payload) > WRITE_HIGH_WATER:
            return False
        if outbox.put((payload, text), len(payload)):
            self.pool.h2_inbox.post(self._flush_outbox)
        return True

    def _flush_outbox(self) -> None:
        """On the owner's loop: write what other loops handed over, in order. Not a coroutine: the senders' byte
        count, not a drain, holds them back."""
        outbox = self.outbox
        outbox.begin()
        while (item := outbox.take()) is not None:
            if self.state != OPEN:  # it raced the close: lost, like bytes the peer will never read
                outbox.clear()
                return
            payload, text = item
            try:
                if self.fast_send:
                    self._send_frame(0x82 if text is None else 0x81, payload)
                elif not self._write(self.ws.send(BytesMessage(data=payload) if text is None
                                                  else TextMessage(data=text))):
                    self._lost()
            except (ClientDisconnected, WSLocalProtocolError):  # (the connection is gone or going: as above)
                outbox.clear()
                return
