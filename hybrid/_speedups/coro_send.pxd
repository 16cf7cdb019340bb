# One step of a coroutine from C, shared by the request's Task (task.pyx) and the pool's TimedCoroutine (steps.pyx).

from cpython.object cimport PyObject


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iter, object arg, PyObject **presult)


cdef inline int send_to(coro, value, PyObject **presult) except -1:
    """coro.send(value) without looking up ``send`` and without the StopIteration a returning coroutine raises
    (PyIter_Send reports the return value instead: no exception object per request or per event). 1: returned
    (``*presult`` is the value), 0: yielded, -1: raised (propagated). ``*presult`` is a new reference."""
    cdef PySendResult r = PyIter_Send(coro, value, presult)
    if r == PYGEN_ERROR:
        return -1
    return 1 if r == PYGEN_RETURN else 0
