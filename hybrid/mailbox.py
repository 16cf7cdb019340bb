"""A Mailbox: calls posted from other threads, run on one loop in batches.

Why not ``loop.call_soon_threadsafe`` per call: each one writes the loop's wake-up fd, and a worker answering
many HTTP/2 streams in one iteration would wake the pool once per stream. Calls posted before the loop runs the
batch join it: one wake-up per batch. Order is kept per posting thread (one deque, appended in order).
"""

from __future__ import annotations

import logging
from collections import deque

logger = logging.getLogger("hybrid.error")


class Mailbox:
    __slots__ = ("loop", "queue", "scheduled")

    def __init__(self, loop) -> None:
        self.loop = loop
        self.queue: deque = deque()
        self.scheduled = False

    def post(self, fn, *args) -> None:
        """From any thread: ``fn(*args)`` runs on the loop, after the calls posted before it."""
        self.queue.append((fn, args))
        if not self.scheduled:
            # (a race with _run clearing the flag at worst schedules one empty run: deque ops are atomic, and
            # _run clears the flag before it drains, so an entry is never left behind)
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._run)
            except RuntimeError:  # the loop is closed: the server is going away
                self.queue.clear()

    def _run(self) -> None:
        self.scheduled = False
        queue = self.queue
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one failed call must not drop the rest of the batch
                logger.exception("A cross-thread call failed")
