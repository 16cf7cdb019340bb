"""A bound on one wait of an HTTP/2 stream (a body that stops arriving, a window that stays shut), by one timer.

Why not ``asyncio.timeout``: on CPython 3.11 each one costs three ``getpid`` system calls (``get_running_loop``
checks the pid), several microseconds each on a VM that makes system calls expensive, at every wait; a large
request body waits several times per request. Here the bound is one ``call_later`` handle, cancelled when the
wait ends: no system call. The waiter's wakers set its result only while it is not done (``_wake_here``,
``wake_window``), so the timer and a wake-up never both land.
"""

from __future__ import annotations

TIMED_OUT = object()


def _expire(waiter) -> None:
    if not waiter.done():
        waiter.set_result(TIMED_OUT)


async def wait_bounded(loop, waiter, timeout: float) -> bool:
    """Await ``waiter`` (a future of ``loop`` that its wakers complete with None); False when ``timeout`` seconds
    passed first. A cancellation goes through, the timer cancelled with it."""
    timer = loop.call_later(timeout, _expire, waiter)
    try:
        return (await waiter) is not TIMED_OUT
    finally:
        timer.cancel()
