"""Every event loop hybrid runs is made here (serving threads, spares, the async pool, ``--mode async``).

hybrid runs one app on several loops, one per thread. An asyncio object kept in a module global (a Queue, an
Event, a Lock) then gets completed from another loop's thread: a handler on loop A does ``queue.put_nowait()``
for a waiter of loop B. asyncio's Future schedules the waiter's wake-up with ``loop.call_soon``, which is not
thread-safe and does not wake B out of ``epoll_wait``; the waiter hung until B woke for something else. Our loops'
``call_soon`` notices the foreign thread and uses ``call_soon_threadsafe`` instead, which wakes B at once
(``hybrid/_speedups/loopcall.pyx``). docs/threading.md says what this does and does not make safe.
"""

from __future__ import annotations

import asyncio
import threading

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio keeps the server usable without it
    uvloop = None

if uvloop is not None:
    from hybrid._speedups.loopcall import ThreadAwareCallSoon

    class HybridLoop(ThreadAwareCallSoon, uvloop.Loop):
        """uvloop's loop whose ``call_soon`` from another thread than the one running it is
        ``call_soon_threadsafe``."""

    def new_event_loop() -> asyncio.AbstractEventLoop:
        return HybridLoop()

else:  # pragma: no cover

    class _AsyncioLoop(asyncio.SelectorEventLoop):
        def call_soon(self, callback, *args, context=None):
            if self._thread_id is not None and self._thread_id != threading.get_ident():
                return self.call_soon_threadsafe(callback, *args, context=context)
            return super().call_soon(callback, *args, context=context)

    def new_event_loop() -> asyncio.AbstractEventLoop:
        return _AsyncioLoop()
