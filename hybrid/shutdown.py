"""The bounds of startup and graceful shutdown, and the exit codes that say how they ended.

Shutdown has three steps that could wait forever: requests in flight, streams in the async pool, and every loop's
lifespan shutdown. ``--timeout-graceful-shutdown`` bounds all three together (each gets what the ones before it
left; lifespan shutdown at least LIFESPAN_MIN). Without it, requests take as long as they take (they are
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
# With it: lifespan shutdown gets what is left of the bound, but at least this (a cut-off request must not
# also cost the app its cleanup).
LIFESPAN_MIN = 1.0


class ShutdownClock:
    """One graceful shutdown: deadlines of its steps, and what was cut short."""

    def __init__(self, bound: float | None) -> None:
        self.started = time.monotonic()
        self.deadline = None if bound is None else self.started + bound
        self.cut: list[str] = []

    def left(self) -> float | None:
        """Seconds left of --timeout-graceful-shutdown (None: unbounded)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def streams_left(self) -> float:
        left = self.left()
        return STREAMS_DEFAULT if left is None else left

    def lifespan_deadline(self) -> float:
        """Monotonic time by which every loop's lifespan shutdown must be over."""
        left = self.left()
        return time.monotonic() + (LIFESPAN_SHUTDOWN_DEFAULT if left is None else max(left, LIFESPAN_MIN))

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
