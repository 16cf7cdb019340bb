"""--timeout-request-body for a request whose app waits for its body (``Connection._arm_body_timer`` and
``_body_stall_check`` in hybrid/_speedups/connection.pyx call these). Only a request that awaits its body arms
it, so plain Python.

A client that stops sending a body the app waits for gets 408 and is closed (else a Content-Length it never
fills would hold the connection forever); so does one that trickles it, averaging less than MIN_BODY_RATE bytes
a second once the body has taken that long (slowloris: a byte every few seconds never stalls).
"""

from __future__ import annotations

import time

from hybrid._speedups.h1 import H1Error

# Once the body has taken --timeout-request-body, it must average this many bytes a second (Apache's
# mod_reqtimeout uses the same rate).
MIN_BODY_RATE = 500

_monotonic = time.monotonic


def arm(conn) -> None:
    cycle = conn.cycle
    if conn.body_timer is None and cycle is not None and not cycle.body_complete:
        if not cycle.body_since:
            cycle.body_since = _monotonic()
        conn.body_timer = conn.loop.call_later(conn.server.config.timeout_request_body, conn._body_stall_check)


def stall_check(conn) -> None:
    conn.body_timer = None
    cycle = conn.cycle
    if cycle is None or cycle.body_complete or conn.sock is None or conn.disconnected:
        return
    limit = conn.server.config.timeout_request_body
    now = _monotonic()
    idle = now - conn.last_active
    elapsed = now - cycle.body_since
    if not conn.reading:  # the app is not asking for more (backpressure): nothing to judge
        conn.body_timer = conn.loop.call_later(max(limit, 0.05), conn._body_stall_check)
        return
    if idle < limit and (elapsed < limit or cycle.received >= MIN_BODY_RATE * elapsed):
        # Progress meanwhile: look again when the stall bound or the first rate check is due, then each second.
        due = min(limit - idle, limit - elapsed) if elapsed < limit else min(limit - idle, 1.0)
        conn.body_timer = conn.loop.call_later(max(due, 0.05), conn._body_stall_check)
        return
    conn.error = H1Error(408, "Request body timeout")
    cycle.fail_body()  # the app sees http.disconnect; nothing was written, so the client gets the 408
    conn.disconnected = True
    conn._stop_reading()
