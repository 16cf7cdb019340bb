"""RequestTask: a real asyncio Task whose first step runs at once, and whose every step is timed.

Why a Task at all: anyio (Starlette, FastAPI) needs ``asyncio.current_task()``; timeouts and cancellation need a
Task to cancel. Why eager: scheduling the first step costs a loop iteration per request, which is most of a small
request's cost. Why timed steps: the monitor must see a thread stuck in app code in any step, not only the first
(an endpoint may block after its first ``await``).

Python 3.12+ starts a Task eagerly itself (``eager_start=True``). On 3.11 the first step is run here directly,
inside the request's context, exactly as the loop would have run it one iteration later.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from asyncio import futures, tasks
from time import perf_counter

_PyTask = tasks._PyTask
_EAGER_NATIVE = sys.version_info >= (3, 12)


# A step of app code longer than this, in a loop that holds other pending requests, is reported: those requests
# waited for it (no CPython server can move a running task to another loop, so the server says so instead).
BLOCKED_STEP = 0.1


class RequestTask(_PyTask):
    """A Task that tells the monitor when a step of app code begins and ends, and times each step."""

    # The SyncWorker (or the AsyncPool) whose loop runs this task's steps (set right after creation).
    _hy_worker = None
    # The request's RequestCycle, set once the task outlives its first step: it names the route in reports.
    _hy_cycle = None

    def _Task__step(self, exc=None):
        worker = self._hy_worker
        worker.enter_app(-1)
        started = perf_counter()
        try:
            super()._Task__step(exc)
        finally:
            worker.leave_app(None)
            took = perf_counter() - started
            if took > BLOCKED_STEP:
                worker.step_blocked(self, self._hy_cycle, took)


def child_task_factory(loop: asyncio.AbstractEventLoop, coro, **kwargs) -> asyncio.Task:
    """A serving loop's task factory. A task that app code starts during a request (an anyio task group:
    Starlette's BaseHTTPMiddleware runs the endpoint in one, StreamingResponse its body) runs app code too: it is
    a RequestTask (timed, marked for the monitor) of the same worker, so a handler that blocks there is taken
    over like one that blocks in the request's own task. Any other task is a plain asyncio Task."""
    parent = tasks.current_task(loop)
    if isinstance(parent, RequestTask) and parent._hy_worker is not None:
        task = RequestTask(coro, loop=loop, **kwargs)
        task._hy_worker = parent._hy_worker
        task._hy_cycle = parent._hy_cycle
        return task
    return tasks.Task(coro, loop=loop, **kwargs)


def start_request_task(coro, loop: asyncio.AbstractEventLoop, worker) -> RequestTask:
    """Create the task and run its first step now, before returning (the caller marks enter/leave)."""
    if _EAGER_NATIVE:
        task = RequestTask.__new__(RequestTask)
        task._hy_worker = worker  # before the eager first step: tasks it starts inherit the worker
        task.__init__(coro, loop=loop, eager_start=True)
        return task
    task = RequestTask.__new__(RequestTask)
    # Mirror _PyTask.__init__ of 3.11 without its call_soon(self.__step): the first step runs below.
    futures._PyFuture.__init__(task, loop=loop)
    task._name = "hybrid-request"
    task._num_cancels_requested = 0
    task._must_cancel = False
    task._fut_waiter = None
    task._coro = coro
    task._context = context = contextvars.copy_context()
    task._hy_worker = worker
    tasks._register_task(task)
    context.run(_PyTask._Task__step, task)
    return task
