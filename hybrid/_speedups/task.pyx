# cython: language_level=3
"""RequestTask: an asyncio Task, compiled, whose first step runs at once and whose every step is timed.

Why a Task at all: anyio (Starlette, FastAPI) needs ``asyncio.current_task()`` and calls ``cancel``, ``cancelling``,
``uncancel`` and reads ``_fut_waiter`` / ``_must_cancel``; timeouts need a Task to cancel. Why our own: asyncio's
C Task schedules its first step for the next loop iteration (3.11 cannot start it eagerly), and its pure-Python
Task, which can be stepped by hand, costs tens of microseconds per request in Python bookkeeping (a WeakSet entry,
Python-level future callbacks). This one is a C Future (asyncio's own) plus the step logic of asyncio's Task,
compiled. Why timed steps: the monitor must see a thread stuck in app code in any step, not only the first (an
endpoint may block after its first ``await``), and a step that blocks a loop holding other requests is reported.

The step follows CPython's ``Task.__step`` / ``__wakeup`` (3.11-3.13 semantics). Differences, on purpose:
- a task is registered with asyncio (``asyncio.all_tasks``) only once it outlives its first step: a request that
  finishes inline, most of them, never pays for the registry (a finished task is not listed anyway);
- the first step is not marked for the monitor by the task: the caller (Connection._start) marks it with the
  connection's fd, so a takeover knows which connection was being served.
"""

import _asyncio
import asyncio
import contextvars
import inspect
import sys
from asyncio import exceptions as _exc

from cpython.dict cimport PyDict_DelItem, PyDict_GetItem, PyDict_SetItem
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from hybrid._speedups.coro_send cimport send_to
from hybrid._speedups.monitor cimport mark_enter, mark_leave


cdef extern from "Python.h":
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef int (*initproc)(PyObject *, PyObject *, PyObject *)
    ctypedef struct TypeInit "PyTypeObject":
        initproc tp_init


_Future = asyncio.Future  # the C Future
_new_task = _Future.__new__
_copy_context = contextvars.copy_context
_Future_cancel = _Future.cancel
_Future_set_result = _Future.set_result
_Future_set_exception = _Future.set_exception
_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task
# asyncio's C _enter_task/_leave_task keep each loop's current task in this dict (3.11 to 3.13; 3.14 keeps it in
# the thread state): a step sets and clears it directly, not through two Python-level calls (~0.8k instructions).
cdef object _CURRENT_TASKS = (asyncio.tasks._current_tasks if sys.version_info < (3, 14)
                              and _enter_task is _asyncio._enter_task and _leave_task is _asyncio._leave_task
                              and asyncio.tasks._current_tasks is _asyncio._current_tasks else None)
cdef TypeInit *_FUTURE_TYPE = <TypeInit*><PyObject*>_Future
cdef tuple _NO_ARGS = ()
# (loop, {"loop": loop}) of the last task made: Future.__init__'s keywords, made once per loop (one tuple, so a
# thread switch never pairs one loop with another's keywords)
cdef tuple _init_kwargs = (None, None)
_register_task = asyncio.tasks._register_task
_current_task = asyncio.tasks.current_task
_CancelledError = _exc.CancelledError

# A step of app code longer than this, in a loop that holds other pending requests, is reported: those requests
# waited for it (no CPython server can move a running task to another loop, so the server says so instead).
BLOCKED_STEP = 0.1


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


class RequestTask(_Future):
    """A Task that tells its worker when a step of app code begins and ends, and times each step.

    ``_hy_worker``: the SyncWorker whose loop runs the steps (its ``monitor`` and ``slot`` mark each step; then
    ``left_blocked`` after a blocked step, ``step_blocked``).
    ``_hy_cycle``: the request's RequestCycle, set once the task outlives its first step (it names the route).
    ``_hy_conn``: the Connection whose request this task is (not a child task's), set once it outlives its first
    step: the step that ends the task tells it at once (``_on_task_done``), and a response completed in one of
    its steps is released at that step's end (``_hy_release``). Through a done callback or ``call_soon`` each
    would cost one more loop iteration (an ``epoll_wait`` and the callback handles) per request that awaited."""

    __slots__ = ("_coro", "_context", "_fut_waiter", "_must_cancel", "_num_cancels_requested", "_name",
                 "_hy_worker", "_hy_cycle", "_hy_conn", "_hy_release", "_registered")

    _log_destroy_pending = True

    def __init__(self, coro, *, loop=None, name=None, context=None, worker=None, start=True):
        _init(self, coro, loop, _copy_context() if context is None else context, worker, name)
        if start:  # a child task (child_task_factory): scheduled like asyncio's, but registered now
            self._register()
            self.get_loop().call_soon(self._step, context=self._context)

    def _register(self):
        if not self._registered:
            self._registered = True
            _register_task(self)

    # -- the Task API ---------------------------------------------------------------------------------------

    def __repr__(self):
        state = "done" if self.done() else "pending"
        return f"<RequestTask {state} name={self.get_name()!r} coro={self._coro!r}>"

    def get_coro(self):
        return self._coro

    def get_context(self):
        return self._context

    def get_name(self):
        if self._name is None:
            self._name = f"hybrid-request-{id(self):x}"
        return self._name

    def set_name(self, value):
        self._name = str(value)

    def get_stack(self, *, limit=None):
        from asyncio import base_tasks
        return base_tasks._task_get_stack(self, limit)

    def print_stack(self, *, limit=None, file=None):
        from asyncio import base_tasks
        return base_tasks._task_print_stack(self, limit, file)

    def set_result(self, result):
        raise RuntimeError("Task does not support set_result operation")

    def set_exception(self, exception):
        raise RuntimeError("Task does not support set_exception operation")

    def cancel(self, msg=None):
        self._log_traceback = False
        if self.done():
            return False
        self._num_cancels_requested += 1
        waiter = self._fut_waiter
        if waiter is not None and waiter.cancel(msg=msg):
            return True
        self._must_cancel = True
        self._cancel_message = msg
        return True

    def cancelling(self):
        return self._num_cancels_requested

    def uncancel(self):
        if self._num_cancels_requested > 0:
            self._num_cancels_requested -= 1
            if self._num_cancels_requested == 0:
                self._must_cancel = False
        return self._num_cancels_requested

    # -- stepping -------------------------------------------------------------------------------------------

    def _step(self, exc=None):
        """A later step, run by the loop: marked for the monitor and timed."""
        worker = self._hy_worker
        if worker is None:
            try:
                _step(self, exc)
            finally:
                _after_step(self)
            return
        # (the worker's monitor marks, as C calls: SyncWorker.enter_app / leave_app cost a Python call each)
        monitor = worker.monitor
        mark_enter(monitor, worker.slot, -1)
        cdef double started = _now()
        cdef double took
        try:
            _step(self, exc)
        finally:
            if mark_leave(monitor, worker.slot):
                worker.left_blocked(None, self._hy_cycle)  # (rare: taken over, or its stack read: it blocked)
            took = _now() - started
            if took > BLOCKED_STEP:
                worker.step_blocked(self, self._hy_cycle, took)
            _after_step(self)

    def _wakeup(self, future):
        try:
            future.result()
        except BaseException as exc:
            self._step(exc)
        else:
            self._step()


cdef inline _after_step(task):
    """A later step of a request's own task is over: if it ended the task, the connection completes the request
    now; if it completed the response while the app goes on, the connection is released now."""
    conn = task._hy_conn
    if conn is None:
        return
    if task.done():
        task._hy_conn = None
        task._hy_release = False
        conn._on_task_done(task)
    elif task._hy_release:
        task._hy_release = False
        conn._release_later(task._hy_cycle)


# Where each of RequestTask's slots lives in the object: a new task's fields are stored there directly. Through
# setattr each store was a type lookup and a descriptor call (about 1.8k instructions per request for the eleven).
cdef Py_ssize_t _SLOT_OFFSETS[11]
assert len(RequestTask.__slots__) == 11
for _i, _name in enumerate(RequestTask.__slots__):
    _SLOT_OFFSETS[_i] = (<PyMemberDescrObject*><PyObject*>RequestTask.__dict__[_name]).d_member.offset


cdef inline void _store(task, Py_ssize_t i, value) noexcept:
    # the slot's old value is NULL (a new task): nothing to release
    cdef PyObject **field = <PyObject**>((<char*><PyObject*>task) + _SLOT_OFFSETS[i])
    Py_INCREF(value)
    Py_XDECREF(field[0])
    field[0] = <PyObject*>value


cdef int _future_init(task, loop) except -1:
    # Future.__init__(task, loop=loop) without a keyword dict per call (the slot wrapper's call builds one)
    global _init_kwargs
    cached = _init_kwargs
    if cached[0] is not loop:
        cached = _init_kwargs = (loop, {"loop": loop})
    kwargs = cached[1]
    return _FUTURE_TYPE.tp_init(<PyObject*>task, <PyObject*>_NO_ARGS, <PyObject*>kwargs)


cdef inline int _enter(loop, task) except -1:
    if _CURRENT_TASKS is None or PyDict_GetItem(_CURRENT_TASKS, loop) != NULL:
        _enter_task(loop, task)  # (asyncio's own, and its error when another task is current)
        return 0
    return PyDict_SetItem(_CURRENT_TASKS, loop, task)


cdef inline int _leave(loop, task) except -1:
    if _CURRENT_TASKS is None or PyDict_GetItem(_CURRENT_TASKS, loop) != <PyObject*>task:
        _leave_task(loop, task)  # (asyncio's own, and its error when the task is not current)
        return 0
    return PyDict_DelItem(_CURRENT_TASKS, loop)


cdef _init(task, coro, loop, context, worker, name):
    """The fields of a new task (RequestTask.__init__ and start_request_task), in __slots__ order."""
    _future_init(task, loop)
    _store(task, 0, coro)  # _coro
    _store(task, 1, context)  # _context
    _store(task, 2, None)  # _fut_waiter
    _store(task, 3, False)  # _must_cancel
    _store(task, 4, 0)  # _num_cancels_requested
    _store(task, 5, name)  # _name
    _store(task, 6, worker)  # _hy_worker
    _store(task, 7, None)  # _hy_cycle
    _store(task, 8, None)  # _hy_conn
    _store(task, 9, False)  # _hy_release
    _store(task, 10, False)  # _registered


cdef _step(task, exc):
    """One step of the task's coroutine (asyncio's Task.__step)."""
    if task.done():
        raise _exc.InvalidStateError(f"_step(): already done: {task!r}, {exc!r}")
    if task._must_cancel:
        if not isinstance(exc, _CancelledError):
            exc = task._make_cancelled_error()
        task._must_cancel = False
    task._fut_waiter = None
    _run_step(task, task._coro, task.get_loop(), exc)


cdef _run_step(task, coro, loop, exc):
    """The step itself: the coroutine runs with ``task`` as the loop's current task."""
    cdef PyObject *sent = NULL
    cdef int returned = 0
    _enter(loop, task)
    try:
        if exc is None:
            returned = send_to(coro, None, &sent)
            result = <object>sent
            Py_XDECREF(sent)
        else:
            result = coro.throw(exc)
    except StopIteration as stop:  # (throw() of a coroutine that returns)
        _returned(task, stop.value)
    except _CancelledError as cancelled:
        _Future_cancel(task, msg=cancelled.args[0] if cancelled.args else None)
    except (KeyboardInterrupt, SystemExit) as fatal:
        _Future_set_exception(task, fatal)
        raise
    except BaseException as error:
        _Future_set_exception(task, error)
    else:
        if returned:
            _returned(task, result)
        else:
            _wait_for(task, loop, result)
    finally:
        _leave(loop, task)


cdef _returned(task, value):
    if task._must_cancel:
        task._must_cancel = False
        _Future_cancel(task, msg=task._cancel_message)
    else:
        _Future_set_result(task, value)


cdef _wait_for(task, loop, result):
    """What the coroutine yielded: a future to wait for, a bare yield (step again soon), or a mistake."""
    blocking = getattr(result, "_asyncio_future_blocking", None)
    if blocking is not None:
        if result.get_loop() is not loop:
            error = RuntimeError(f"Task {task!r} got Future {result!r} attached to a different loop")
        elif not blocking:
            error = RuntimeError(f"yield was used instead of yield from in task {task!r} with {result!r}")
        elif result is task:
            error = RuntimeError(f"Task cannot await on itself: {task!r}")
        else:
            result._asyncio_future_blocking = False
            result.add_done_callback(task._wakeup, context=task._context)
            task._fut_waiter = result
            if task._must_cancel and result.cancel(msg=task._cancel_message):
                task._must_cancel = False
            return
    elif result is None:
        loop.call_soon(task._step, context=task._context)
        return
    elif inspect.isgenerator(result):
        error = RuntimeError(f"yield was used instead of yield from for generator in task {task!r} with {result!r}")
    else:
        error = RuntimeError(f"Task got bad yield: {result!r}")
    loop.call_soon(task._step, error, context=task._context)


def start_request_task(coro, loop, worker):
    """Create the task and run its first step now, in a fresh context, before returning (the caller marks the
    step for the monitor). A task still pending after it is registered with asyncio like any other."""
    task = _new_task(RequestTask)  # (no keyword parsing: this runs for every request)
    context = _copy_context()
    _init(task, coro, loop, context, worker, None)
    # context.run(), without its Python-level call: a new task is neither done nor cancelled, nor waiting
    PyContext_Enter(context)
    try:
        _run_step(task, coro, loop, None)
    finally:
        PyContext_Exit(context)
    if not task.done():
        task._register()
    return task


def child_task_factory(loop, coro, **kwargs):
    """A serving loop's task factory. A task that app code starts during a request (an anyio task group:
    Starlette's BaseHTTPMiddleware runs the endpoint in one, StreamingResponse its body) runs app code too: it is
    a RequestTask (timed, marked for the monitor) of the same worker, so a handler that blocks there is taken
    over like one that blocks in the request's own task. Any other task is a plain asyncio Task."""
    parent = _current_task(loop)
    if isinstance(parent, RequestTask) and parent._hy_worker is not None:
        kwargs.pop("eager_start", None)
        task = RequestTask(coro, loop=loop, worker=parent._hy_worker, **kwargs)
        task._hy_cycle = parent._hy_cycle
        return task
    return asyncio.Task(coro, loop=loop, **kwargs)
