"""WebSocket keepalive: a ping every ``--ws-ping-interval`` seconds; a peer that does not answer within
``--ws-ping-timeout`` fails with 1011.

A mixin of ``WebSocketSession`` (hybrid/asgi/websocket.py), which holds the state these methods use.
"""

from __future__ import annotations

import os

from wsproto.connection import ConnectionState
from wsproto.events import Ping

from hybrid.asgi.ws_states import OPEN


class WebSocketKeepalive:
    """The ping and pong timers of an OPEN WebSocket."""

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
