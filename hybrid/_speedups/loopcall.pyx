# cython: language_level=3
"""``call_soon`` for hybrid's loops: from the loop's own thread uvloop's plain call_soon, from any other thread its
call_soon_threadsafe, which also wakes the loop.

Why: hybrid runs one app on several loops, one per thread. asyncio's Future schedules its callbacks with
``loop.call_soon`` looked up on the loop, so an ``asyncio.Queue.put_nowait`` / ``Event.set`` / ``Lock.release``
made by a handler on loop A completes a waiter of loop B from A's thread: uvloop's plain call_soon queues the
wake-up but does not wake B, asleep in epoll_wait, so the waiter hangs until B wakes for something else.
Compiled: every wake-up of a task on the serving loops goes through here, so the own-thread case is one
``pthread_self`` and one comparison more than uvloop's own.
"""

from cpython.pythread cimport PyThread_get_thread_ident

from uvloop.loop import Loop as _UVLoop

cdef object _call_soon = _UVLoop.call_soon
cdef object _call_soon_threadsafe = _UVLoop.call_soon_threadsafe


class ThreadAwareCallSoon:
    """Mixin for a uvloop.Loop subclass; ``_hybrid_thread`` is the ident of the thread that runs the loop."""

    _hybrid_thread = 0

    def call_soon(self, callback, *args, context=None):
        if PyThread_get_thread_ident() == <unsigned long>self._hybrid_thread:
            # (the shapes asyncio's Task and Future use, as vectorcalls: no tuple or dict built for the call)
            if not args:
                return _call_soon(self, callback, context=context)
            if len(args) == 1:
                return _call_soon(self, callback, (<tuple>args)[0], context=context)
            return _call_soon(self, callback, *args, context=context)
        return _call_soon_threadsafe(self, callback, *args, context=context)
