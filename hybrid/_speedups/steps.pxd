# Typed declarations of steps.pyx: an app coroutine whose every step is timed.

cdef class TimedCoroutine:
    cdef object _coro
    cdef object _report
    cdef double _bound
    cdef public object cycle

    cdef object _step(self, value)
