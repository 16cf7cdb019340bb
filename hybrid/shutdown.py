"""The bounds of startup and graceful shutdown, and the exit codes that say how they ended.

Shutdown has three steps that could wait forever: requests in flight, streams in the async pool, and every loop's
lifespan shutdown. ``--timeout-graceful-shutdown`` bounds all three together (each gets what the ones before it
left, and requests and streams stop LIFESPAN_RESERVE before the bound so that lifespan shutdown fits inside it:
the bound is the bound). Without it, requests take as long as they take (they are
finite), but streams and lifespan shutdown, which may never end by themselves, get their own defaults. Whatever
is still running at its bound is abandoned, and the process exits EXIT_CUT_SHORT so the one who stopped it knows.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("hybrid.error")

EXIT_STARTUP_FAILED = 3  # (bind, import, lifespan startup failed or past --timeout-startup)
EXIT_CUT_SHORT = 4  # a graceful shutdown (or a startup) was cut short: work was abandoned at its bound

# Without --timeout-graceful-shutdown: open streams (SSE, WebSockets) get this long to end, then end of stream /
# close 1001; lifespan shutdown gets this long.
STREAMS_DEFAULT = 5.0
LIFESPAN_SHUTDOWN_DEFAULT = 10.0
# With it: requests and streams get the bound less this much (at most a quarter of it), so that a cut-off request
# does not also cost the app its cleanup; lifespan shutdown gets what is left, up to the bound itself.
LIFESPAN_RESERVE = 1.0
# A lifespan shutdown past its deadline is abandoned this long before the threads are given up for stuck, so that
# its loop can still say so (and end) within the bound.
ABANDON_GRACE = 0.1


class ShutdownClock:
    """One graceful shutdown: deadlines of its steps, and what was cut short."""

    def __init__(self, bound: float | None) -> None:
        self.started = time.monotonic()
        self.end = None if bound is None else self.started + bound  # the whole shutdown, lifespan included
        # requests and streams: what they may take of it
        self.deadline = None if bound is None else self.end - min(LIFESPAN_RESERVE, bound / 4)
        self._grace = 0.0 if bound is None else min(ABANDON_GRACE, bound / 20)
        self.cut: list[str] = []

    def left(self) -> float | None:
        """Seconds left of --timeout-graceful-shutdown (None: unbounded)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def streams_left(self) -> float:
        left = self.left()
        return STREAMS_DEFAULT if left is None else left

    def lifespan_deadline(self) -> float:
        """Monotonic time by which every loop's lifespan shutdown must be over."""
        if self.end is None:
            return time.monotonic() + LIFESPAN_SHUTDOWN_DEFAULT
        return self.end - self._grace

    def join_deadline(self, lifespan_deadline: float) -> float:
        """Monotonic time until which the loops' threads are waited for, after ``lifespan_deadline``."""
        return lifespan_deadline + (ABANDON_GRACE if self.end is None else self._grace)

    def cut_short(self, what: str) -> None:
        self.cut.append(what)
        logger.warning("Graceful shutdown cut short: %s.", what)

    @property
    def exit_code(self) -> int:
        return EXIT_CUT_SHORT if self.cut else 0


def wait_until(ready, deadline: float, abort) -> str:
    """Wait for the threading.Event ``ready`` until ``deadline`` (monotonic), polling ``abort()`` (a signal
    arrived): 'ready', 'timeout' or 'aborted'."""
    while not ready.wait(0.02):
        if abort():
            return "aborted"
        if time.monotonic() >= deadline:
            return "timeout"
    return "ready"


class StartupError(Exception):
    """The server could not start (bind, app import, lifespan startup): exit EXIT_STARTUP_FAILED; the message
    says why."""


class StartupAborted(Exception):
    """Startup did not finish: past --timeout-startup (exit 3) or stopped by a signal (exit 4)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def check_startup(outcome: str, what: str, timeout: float) -> None:
    """Raise StartupAborted for a ``wait_until`` outcome other than 'ready'."""
    if outcome == "timeout":
        raise StartupAborted(f"Application startup did not complete within {timeout:g} s (--timeout-startup; "
                             f"{what} still in lifespan startup).", EXIT_STARTUP_FAILED)
    if outcome == "aborted":
        raise StartupAborted("Stopped by a signal during application startup (lifespan startup did not complete).",
                             EXIT_CUT_SHORT)
