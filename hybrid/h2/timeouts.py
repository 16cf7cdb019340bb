"""The reading side's timeouts of an HTTP/2 connection: no stream open for --timeout-keep-alive (GOAWAY
NO_ERROR), a frame or header block incomplete for --timeout-request-head (GOAWAY PROTOCOL_ERROR).

One watchdog timer checks them, armed again each time it looks, and sooner only when a header block starts (its
bound may end first). Why not an ``asyncio.timeout`` around each read, as before: on CPython 3.11 each costs three
``getpid`` system calls (``get_running_loop`` checks the pid), ~30 us on this kind of VM, at every read.

A mixin of ``H2Session`` (session.py), which holds the clocks (``idle_since``, ``partial_since``) and calls
``_arm`` once at its start.
"""

from __future__ import annotations

import time

from h2.errors import ErrorCodes


class H2Timeouts:
    """Keep-alive and head timeouts by one watchdog timer."""

    def _read_timeout(self) -> float:
        now = time.monotonic()
        if self.partial_since:
            return max(0.0, self.partial_since + self.head_timeout - now)
        if not self.streams:
            return max(0.0, self.idle_since + self.keep_alive - now)
        # Streams are open: look again one keep-alive later. Never too late: the idle clock starts after now, so
        # its end is after that look, which then waits for it (and an open WebSocket costs a wake-up per 5 s, not 1).
        return max(self.keep_alive, 1.0)

    def _arm(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        delay = self._read_timeout()
        self.watch_at = time.monotonic() + delay
        self.watchdog = self.loop.call_later(delay, self._watch)

    def _watch(self) -> None:
        """The timeouts of the reading side, checked when the next one may have run out: GOAWAY and close, or
        look again."""
        self.watchdog = None
        if self.closed:
            return
        if self._timed_out():
            self.close()
        else:
            self._arm()

    def _timed_out(self) -> bool:
        now = time.monotonic()
        if self.partial_since and now - self.partial_since >= self.head_timeout:
            self._goaway(ErrorCodes.PROTOCOL_ERROR, b"incomplete frame past --timeout-request-head")
            return True
        if not self.streams and now - self.idle_since >= self.keep_alive:
            self._goaway(ErrorCodes.NO_ERROR, b"idle")
            return True
        return False
