"""Logging an exception the app raised, with a plain-words hint for the one mistake hybrid's loops make likely.

hybrid runs app code on several event loops in one process (one per serving thread, one per spare that takes
over from a blocked handler, and the async pool's). An asyncio object kept in a module global (a Lock, Queue,
Event, a client or connection pool built on them) belongs to the first loop that waits on it; a request served on
another loop then gets asyncio's terse "bound to a different event loop" / "attached to a different loop". The
first time that happens in a process, the log says what it means and how to fix it.
"""

from __future__ import annotations

import logging
import threading

CROSS_LOOP_MARKERS = ("attached to a different loop", "bound to a different event loop")

CROSS_LOOP_HINT = (
    "The exception above means an asyncio object (a Lock, Queue, Event, Future, or a client or connection pool "
    "built on them) was created on, or first used from, one event loop and then used from another. hybrid runs "
    "your app on several event loops in one process: one per serving thread, one per spare thread that takes over "
    "from a blocked handler, and the async pool's (streams, SSE, WebSockets). An object kept in a module global, "
    "or on app.state (which the lifespan of every loop overwrites), is shared by all of them, and only one loop "
    "can use it. To fix it: create such objects in the app's lifespan and yield them as lifespan state "
    "(request.state / scope['state']); the lifespan runs in every loop, so each loop gets its own. Or serve the "
    "routes that use them from the async pool alone with --async-path GLOB, or run every request on one loop "
    "with --mode async (no inline serving threads: a blocking handler then stalls everyone). "
    "(hybrid says this once per process.)"
)

_hint_lock = threading.Lock()
_hinted = False


def is_cross_loop_error(exc: BaseException | None) -> bool:
    """True if ``exc``, an exception it was raised from or during, or one inside an exception group, is asyncio's
    RuntimeError for an object used from a loop other than its own."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 64:
            continue
        seen.add(id(e))
        if isinstance(e, RuntimeError) and any(m in str(e) for m in CROSS_LOOP_MARKERS):
            return True
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.append(e.__cause__)
        todo.append(e.__context__)
    return False


def log_app_exception(logger: logging.Logger, exc: BaseException) -> None:
    """Log an exception that escaped the app; the first cross-loop error of the process also gets the hint."""
    global _hinted
    logger.error("Exception in ASGI application", exc_info=exc)
    if _hinted or not is_cross_loop_error(exc):
        return
    with _hint_lock:
        if _hinted:
            return
        _hinted = True
    logger.warning(CROSS_LOOP_HINT)
