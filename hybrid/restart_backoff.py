"""How long the supervisor waits before replacing a worker that died on its own.

A worker that keeps dying (an app that fails at startup, a crash on the first request) must not be restarted in a
tight loop: each failure in a row doubles the delay, from FIRST up to CAP, and it stays at CAP for as long as they
keep failing. Only a worker that was ready and served for STABLE seconds proves the problem gone: its death starts
again from FIRST. (The time between two restarts says nothing: at the cap they are always far apart.)
"""

from __future__ import annotations


class RestartBackoff:
    FIRST = 0.1
    CAP = 10.0
    STABLE = 10.0  # seconds a worker must have been ready for its death not to count as one more failure

    def __init__(self) -> None:
        self.delay = 0.0  # the next restart's delay
        self.failures = 0  # deaths in a row of workers that were not stable
        self._pending = False  # a delay was handed out and no restart has happened since

    def failed(self, now: float, stable: bool) -> float:
        """A worker died at ``now`` (``stable``: it had been ready STABLE seconds). Returns the delay before its
        restart; several deaths before one restart count once. (``now`` is not used to forgive failures: the time
        between restarts says nothing about whether the next one will fail.)"""
        if stable:
            self.failures = 0
            self.delay = 0.0
        if not self._pending:
            self.failures += 1
            self.delay = self.FIRST if self.delay == 0.0 else min(self.delay * 2, self.CAP)
            self._pending = True
        return self.delay

    def restarted(self, now: float) -> None:
        self._pending = False
