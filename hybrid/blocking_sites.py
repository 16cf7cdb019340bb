"""Where handlers blocked, grouped by (route, location): one warning per new pair, then counters.

A blocked step (taken over by the monitor, or longer than the report bound) is recorded by its own thread when it
ends, with the place the stack sampler saw it (hybrid/stack_sampler.py). Memory is bounded under a flood of
distinct routes or locations: the first ``SITES_LIMIT`` pairs are counted each on its own, every later one as
("other", "other"), for the counters, the ``hybrid_blocked_seconds_total{route,location}`` metric and the
summaries alike.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("hybrid.error")

SITES_LIMIT = 100
OTHER = "other"
# A step that ended before the sampler could read its stack (a block of a few milliseconds).
UNKNOWN = "unknown"
SUMMARY_TOP = 10


def route_of(cycle) -> str:
    """'GET /orders' (a WebSocket's scope has no method)."""
    if cycle is None:
        return "(unknown route)"
    scope = cycle.scope
    return f"{scope.get('method', 'WebSocket')} {scope['path']}"


class Site:
    __slots__ = ("count", "total", "worst", "trace")

    def __init__(self, trace: str) -> None:
        self.count = 0
        self.total = 0.0
        self.worst = 0.0
        self.trace = trace


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


class BlockingSites:
    def __init__(self, metrics=None, limit: int = SITES_LIMIT) -> None:
        self.metrics = metrics
        self.limit = limit
        self.sites: dict[tuple[str, str], Site] = {}
        self._lock = threading.Lock()
        self._overflowed = False

    def record(self, cycle, sample, took: float, where: str) -> None:
        """A blocked step of ``cycle``'s route ended after ``took`` seconds; ``sample`` (or None) says where it
        was while blocked; ``where`` names the loop ('hybrid-worker-0, taken over', 'the async pool')."""
        route = route_of(cycle)
        if sample is not None:
            location, trace = sample.where()
            moved = sample.others()
        else:
            location, trace, moved = UNKNOWN, "unknown (the step returned before its stack was read)", ""
        key = (route, location)
        with self._lock:
            site = self.sites.get(key)
            new = site is None
            if new:
                if len(self.sites) >= self.limit:
                    key = (OTHER, OTHER)
                    new = False
                    site = self.sites.get(key)
                    if site is None:
                        site = self.sites[key] = Site(f"(routes and locations past the first {self.limit})")
                        overflow_note = not self._overflowed
                        self._overflowed = True
                    else:
                        overflow_note = False
                else:
                    site = self.sites[key] = Site(trace)
                    overflow_note = False
            else:
                overflow_note = False
            site.count += 1
            site.total += took
            site.worst = max(site.worst, took)
        if self.metrics is not None:
            self.metrics.blocked_at(key[0], key[1], took)
        if new:
            logger.warning("%s blocked %s at %s%s (%s). Said once per route and location; the shutdown summary and "
                           "SIGUSR1 list them all.", route, _ms(took), trace, moved, where)
        elif overflow_note:
            logger.warning("More than %d routes and locations blocked: the rest are counted as %r.", self.limit,
                           OTHER)

    def top(self, n: int = SUMMARY_TOP) -> list[tuple[str, str, int, float, float, str]]:
        """(route, location, count, total, worst, trace) of the top ``n`` pairs by total blocked time."""
        with self._lock:
            rows = [(route, location, s.count, s.total, s.worst, s.trace)
                    for (route, location), s in self.sites.items()]
        return sorted(rows, key=lambda row: row[3], reverse=True)[:n]

    def summary(self, n: int = SUMMARY_TOP, who: str = "") -> list[str]:
        """Lines naming the top ``n`` (route, location) pairs by total blocked time (``who``: ' in worker [PID]')."""
        top = self.top(n)
        if not top:
            return []
        lines = [f"Where handlers blocked{who} (top {len(top)} of {len(self.sites)} by total time):"]
        for route, location, count, total, worst, trace in top:
            lines.append(f"  {route} at {location}: {count} times, {_ms(total)} in all, worst {_ms(worst)}; {trace}")
        return lines

    def dump(self, sampler, who: str = "") -> list[str]:
        """The SIGUSR1 dump: the summary, then every step blocked right now (``sampler``: the StackSampler, or None
        with --no-blocking-stacks). A handler stuck for good never returns, so it shows only here."""
        if sampler is None:
            return [f"Blocking locations are not captured{who} (--no-blocking-stacks)."]
        lines = self.summary(who=who) or [f"No handler has blocked so far{who}."]
        names = {t.ident: t.name for t in threading.enumerate()}
        now = time.monotonic()
        for ident, began, sample in sampler.in_progress():
            _location, trace = sample.where()
            lines.append(f"Blocked now: {names.get(ident, ident)} for {_ms(now - began)} so far, at {trace}"
                         f"{sample.others()}")
        return lines
