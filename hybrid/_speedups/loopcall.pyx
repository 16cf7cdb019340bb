# cython: language_level=3
"""``call_soon`` for hybrid's loops: from the thread running the loop uvloop's plain call_soon, from any other
thread its call_soon_threadsafe, which also wakes the loop.

Why: hybrid runs one app on several loops, one per thread. asyncio's Future schedules its callbacks with
``loop.call_soon`` looked up on the loop, so an ``asyncio.Queue.put_nowait`` / ``Event.set`` / ``Lock.release``
made by a handler on loop A completes a waiter of loop B from A's thread: uvloop's plain call_soon queues the
wake-up but does not wake B, asleep in epoll_wait, so the waiter hangs until B wakes for something else.
Compiled, and the running loop kept in a C thread-local: every wake-up of a task on the serving loops comes
through here.
"""

from uvloop.loop import Loop as _UVLoop

cdef extern from *:
    """
    static __thread void *hybrid_running_loop = NULL;  /* the loop this thread is running, if any */
    """
    void *hybrid_running_loop

cdef object _call_soon = _UVLoop.call_soon
cdef object _call_soon_threadsafe = _UVLoop.call_soon_threadsafe
cdef object _run_forever = _UVLoop.run_forever


class ThreadAwareCallSoon:
    """Mixin for a uvloop.Loop subclass."""

    def run_forever(self):
        cdef void *outer = hybrid_running_loop
        global hybrid_running_loop
        hybrid_running_loop = <void *>self  # (uvloop's run_until_complete comes through here too)
        try:
            return _run_forever(self)
        finally:
            hybrid_running_loop = outer

    def call_soon(self, callback, *args, context=None):
        if hybrid_running_loop == <void *>self:
            # (the shapes asyncio's Task and Future use, as vectorcalls: no tuple or dict built for the call)
            if not args:
                return _call_soon(self, callback, context=context)
            if len(args) == 1:
                return _call_soon(self, callback, (<tuple>args)[0], context=context)
            return _call_soon(self, callback, *args, context=context)
        return _call_soon_threadsafe(self, callback, *args, context=context)
