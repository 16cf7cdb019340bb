"""The young generation's collection threshold in a server process (``--gc-threshold``, docs/performance.md).

Why: CPython (before 3.13) collects its youngest generation after 700 net allocations of container objects. A
server with many requests in flight at once (64 keep-alive clients, each request awaiting a thread hop) keeps
every request's objects alive across those collections: they find nothing to free (0-4 objects per 1,000
requests, measured) and only move the live objects up a generation, to be scanned again there. With a Starlette
``FileResponse`` over 64 connections that was 49.5k instructions per request in the collector alone (granian,
which feeds requests to the same app one at a time, 19.6k); at 2,000, CPython 3.13's own default, 2.6k. But
2,000 is still less than what 64 requests in flight hold at once through a FastAPI ``def`` JSON POST or a Django
view, so the net count crossed it as the set of live requests grew and shrank: a young collection every ~22
FastAPI requests that freed nothing (21 us of collector per request, middle and full ones included) and, with
Django, which does leave cycles, 61 us. At 10,000 those were 0.2 and 32 us (gc.callbacks, 11,000 requests,
docs/performance.md); the price is at most 10,000 young objects of cyclic garbage held between collections.

Set once the app is imported, and only if the import left the thresholds as they were: an app that calls
``gc.set_threshold`` itself keeps its own setting, also with ``hybrid.run(app)``, where the app was imported
before the server started. Only the youngest generation's threshold changes, and only upwards (an interpreter
that already uses more keeps it).
"""

from __future__ import annotations

import gc

# Above the young objects 64 requests in flight hold (CPython's default: 700 before 3.13, 2000 in 3.13).
DEFAULT_GC_THRESHOLD = 10000


def apply_gc_threshold(threshold: int, before: tuple[int, ...]) -> None:
    """Raise the youngest generation's threshold to ``threshold`` (0: leave the interpreter's setting), unless
    the app changed the thresholds (``before``: ``gc.get_threshold()`` before it was imported)."""
    current = gc.get_threshold()
    if threshold and current == before and current[0] < threshold:
        gc.set_threshold(threshold, *current[1:])
