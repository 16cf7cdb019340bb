# cython: language_level=3
"""TimedCoroutine: an app coroutine whose every step is timed, run by asyncio's C Task.

The async pool runs many long streams, each a Task stepping once per event; the pure-Python ``RequestTask`` the
workers use (hybrid/asgi/task.py: it must run its first step at once on 3.11, which the C Task cannot) costs a
microsecond more per step. Here the C Task steps this wrapper, which steps the app's coroutine and reads a
monotonic clock around it: a step that holds the loop longer than ``bound`` seconds is reported
(``report(wrapper, seconds)``), so the pool can name the route that blocked it.

asyncio and anyio look at a Task's coroutine (``cr_frame``, ``cr_running`` for ``inspect.getcoroutinestate``,
``cr_await``, ``__qualname__`` for reprs): those are forwarded to the wrapped coroutine.
"""

import collections.abc

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from hybrid._speedups.coro_send cimport send_to


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


# The monitor's step clock of the loop that steps these (the async pool's WATCHED slot, see watch_steps): set to
# the step's start while it runs, 0 between steps, so the monitor can flag a step still blocking the loop and the
# stack sampler capture where it is. Two stores per step; NULL (not watched) costs one test.
cdef double* _clock = NULL


def watch_steps(size_t address):
    """Mark every step in the monitor slot at ``address`` (Monitor.step_clock; 0: stop)."""
    global _clock
    _clock = <double*>address


cdef class TimedCoroutine:
    """Wraps ``coro``; ``report(self, seconds, started)`` is called after any step longer than ``bound`` seconds."""

    def __init__(self, coro, report, double bound, cycle=None):
        self._coro = coro
        self._report = report
        self._bound = bound
        self.cycle = cycle

    cdef object _step(self, value):
        cdef double started = _now()
        cdef double took
        cdef PyObject *out = NULL
        cdef int returned
        cdef double* clock = _clock
        if clock != NULL:
            clock[0] = started
        try:
            returned = send_to(self._coro, value, &out)
        finally:
            took = _now() - started
            if clock != NULL:
                clock[0] = 0
            if took > self._bound:
                self._report(self, took, started)
        result = <object>out
        Py_XDECREF(out)
        if returned:
            raise StopIteration(result)  # (once per stream: its end)
        return result

    def send(self, value):
        return self._step(value)

    def throw(self, typ, val=None, tb=None):
        cdef double started = _now()
        cdef double took
        cdef double* clock = _clock
        if clock != NULL:
            clock[0] = started
        try:
            if val is None and tb is None:
                return self._coro.throw(typ)
            return self._coro.throw(typ, val, tb)
        finally:
            took = _now() - started
            if clock != NULL:
                clock[0] = 0
            if took > self._bound:
                self._report(self, took, started)

    def close(self):
        return self._coro.close()

    def __next__(self):  # (the C Task steps a coroutine that is not a native one through this)
        return self._step(None)

    def __iter__(self):
        return self

    def __await__(self):
        return self

    @property
    def cr_frame(self):
        return self._coro.cr_frame

    @property
    def cr_running(self):
        return self._coro.cr_running

    @property
    def cr_await(self):
        return self._coro.cr_await

    @property
    def cr_code(self):
        return self._coro.cr_code

    @property
    def cr_suspended(self):
        return getattr(self._coro, "cr_suspended", False)

    @property
    def __name__(self):
        return self._coro.__name__

    @property
    def __qualname__(self):
        return self._coro.__qualname__

    def __repr__(self):
        return f"<TimedCoroutine {self._coro!r}>"


# The C Task accepts a coroutine it can step: a registered Coroutine with send/throw/close.
collections.abc.Coroutine.register(TimedCoroutine)
