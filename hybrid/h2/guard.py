"""Budgets that end a flood on one HTTP/2 connection (GOAWAY ENHANCE_YOUR_CALM, then close).

A token bucket per kind of frame a client can send for free: each frame spends a token, tokens come back at a
steady rate up to the bucket's size, an empty bucket ends the connection. A legitimate client resets a stream
now and then (a cancelled navigation) or pings for keepalive; a flood spends thousands a second.
"""

from __future__ import annotations

import time

# (size, tokens back per second). Resets: CVE-2023-44487 (HEADERS then RST_STREAM at once, each costing the
# server a request); PING and SETTINGS: each makes the server write an ACK (CVE-2019-9512, CVE-2019-9515).
RESET_BUDGET = (200, 50.0)
PING_BUDGET = (100, 10.0)
SETTINGS_BUDGET = (100, 10.0)
# DATA frames with no payload and no END_STREAM: free to send, each costs the server an event (CVE-2019-9518).
EMPTY_DATA_BUDGET = (100, 10.0)


class Budget:
    __slots__ = ("size", "rate", "tokens", "at")

    def __init__(self, size_rate: tuple[int, float]) -> None:
        self.size, self.rate = size_rate
        self.tokens = float(self.size)
        self.at = time.monotonic()

    def spend(self) -> bool:
        """One token; False when the bucket is empty (the flood's end)."""
        now = time.monotonic()
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate) - 1.0
        self.at = now
        return self.tokens >= 0.0
