"""RequestTask (hybrid/_speedups/task.pyx) behaves as asyncio's Task does: each scenario runs once under asyncio's
own Task and once under RequestTask (first step run at once, as Connection._start does), and the observable
results must be the same. The server-level tests (frameworks, anyio cancel scopes, timeouts over real sockets)
build on this; here every Task rule the step logic re-implements is pinned one by one."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import time

import pytest
import uvloop
from hybrid._speedups.monitor import Monitor
from hybrid._speedups.task import RequestTask, child_task_factory, start_request_task

VAR = contextvars.ContextVar("var", default="unset")


class _RecordingMonitor(Monitor):
    """A real monitor slot whose marks are recorded (the compiled task calls enter/leave as C calls; a Python
    subclass's overrides still run)."""

    def __init__(self, *args) -> None:
        self.marks: list[str] = []

    def enter(self, slot: int, fd: int) -> None:
        self.marks.append("enter")
        super().enter(slot, fd)

    def leave(self, slot: int) -> bool:
        self.marks.append("leave")
        return super().leave(slot)


class _Worker:
    """What a RequestTask asks of its worker: its monitor slot, marked around each later step, and blocked steps."""

    def __init__(self) -> None:
        self.monitor = _RecordingMonitor(2, 1.0, 0.01)
        self.slot = self.monitor.add_slot(-1)
        self.marks = self.monitor.marks
        self.blocked: list[float] = []

    def left_blocked(self, conn, cycle) -> None:
        raise AssertionError("no takeover here")

    def step_blocked(self, task, cycle, took: float) -> None:
        self.blocked.append(took)


async def _start(coro, loop, worker):
    """start_request_task as Connection._start calls it: from a loop callback, never inside another task."""
    started = loop.create_future()
    loop.call_soon(lambda: started.set_result(start_request_task(coro, loop, worker)))
    return await started


def _run(scenario, *, ours: bool, loop_factory=uvloop.new_event_loop):
    """Run ``scenario(loop)`` (a coroutine function) as the request task of a fresh loop; return what it
    returned or raised, plus the task itself for further checks."""
    loop = loop_factory()
    worker = _Worker()
    try:
        asyncio.set_event_loop(loop)
        loop.set_task_factory(child_task_factory)

        async def main():
            if ours:
                task = await _start(scenario(loop), loop, worker)
            else:
                task = loop.create_task(scenario(loop))
            try:
                return ("ok", await asyncio.wait_for(asyncio.shield(task), 5)), task
            except asyncio.CancelledError:
                return ("cancelled", task.cancelled()), task
            except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
                # (messages that quote the task's repr differ by class name: compare what follows it)
                return ("raised", type(exc).__name__, str(exc).rpartition("> ")[2]), task

        outcome, task = loop.run_until_complete(main())
        return outcome, task, worker
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def _returns(loop):
    await asyncio.sleep(0)
    return 42


async def _raises(loop):
    await asyncio.sleep(0)
    raise ValueError("boom")


async def _raises_at_once(loop):
    raise KeyError("first step")


async def _cancels_itself(loop):
    asyncio.current_task().cancel("by itself")
    await asyncio.sleep(0)
    return "not reached"


async def _swallows_cancel(loop):
    task = asyncio.current_task()
    task.cancel()
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        return ("swallowed", task.cancelling(), task.uncancel(), task.cancelling())
    return "not cancelled"


async def _timeout(loop):
    try:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    except TimeoutError:
        return ("timed out", asyncio.current_task().cancelling())
    return "no timeout"


async def _task_group(loop):
    results = []

    async def child(n):
        await asyncio.sleep(0.001 * n)
        results.append((n, VAR.get(), asyncio.current_task() is not None))
        return n

    VAR.set("request")
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(child(n)) for n in range(3)]
    return sorted(results), [t.result() for t in tasks]


async def _task_group_failure(loop):
    async def fails():
        await asyncio.sleep(0)
        raise ValueError("child")

    async def waits():
        await asyncio.sleep(1)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(fails())
            group.create_task(waits())
    except ExceptionGroup as eg:
        return ("group", [str(e) for e in eg.exceptions], asyncio.current_task().cancelling())
    return "no error"


async def _awaits_a_task(loop):
    other = loop.create_task(_returns(loop))
    return await other


async def _bare_yield(loop):
    class Yield:
        def __await__(self):
            yield  # a bare yield: the task steps again on the next loop turn

    await Yield()
    return "after bare yield"


async def _foreign_future(loop):
    other = asyncio.new_event_loop()
    try:
        await other.create_future()
    finally:
        other.close()


async def _current_task_is_self(loop):
    task = asyncio.current_task()
    await asyncio.sleep(0)
    return task is asyncio.current_task() and task.get_coro() is not None and not task.done()


async def _context_is_isolated(loop):
    VAR.set("inside")
    await asyncio.sleep(0)
    return VAR.get()


async def _wait_for_cancelled_inner(loop):
    inner = loop.create_future()
    loop.call_later(0.01, inner.cancel)
    try:
        await inner
    except asyncio.CancelledError:
        return "inner cancelled"
    return "not cancelled"


SCENARIOS = [_returns, _raises, _raises_at_once, _cancels_itself, _swallows_cancel, _timeout, _task_group,
             _task_group_failure, _awaits_a_task, _bare_yield, _foreign_future, _current_task_is_self,
             _context_is_isolated, _wait_for_cancelled_inner]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__.strip("_") for s in SCENARIOS])
def test_same_outcome_as_asyncio_task(scenario):
    expected, _, _ = _run(scenario, ours=False)
    got, task, _ = _run(scenario, ours=True)
    assert type(task) is RequestTask
    assert got == expected


def test_cancel_from_outside_while_waiting():
    for ours in (False, True):
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        seen = []

        async def handler(loop=loop, seen=seen):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError as exc:
                seen.append(exc.args)
                raise

        async def main(ours=ours, loop=loop, handler=handler):
            task = await _start(handler(), loop, _Worker()) if ours else loop.create_task(handler())
            await asyncio.sleep(0.01)
            assert task.cancel("stop") is True
            assert task.cancelling() == 1
            with pytest.raises(asyncio.CancelledError):
                await task
            return task.cancelled(), task.cancel(), task.done()

        try:
            assert loop.run_until_complete(main()) == (True, False, True)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
        assert seen == [("stop",)]


def test_later_steps_are_marked_and_timed_the_first_is_not():
    async def scenario(loop):
        await asyncio.sleep(0)  # step 2
        await asyncio.sleep(0)  # step 3
        return "done"

    outcome, task, worker = _run(scenario, ours=True)
    assert outcome == ("ok", "done")
    # The first step runs inside the caller's own enter/leave (Connection._start marks it with the connection's
    # fd); the two later steps are marked by the task itself.
    assert worker.marks == ["enter", "leave"] * 2


def test_a_blocking_later_step_is_reported():
    import time

    async def scenario(loop):
        await asyncio.sleep(0)
        time.sleep(0.12)  # past BLOCKED_STEP (0.1 s)
        return "slept"

    outcome, _, worker = _run(scenario, ours=True)
    assert outcome == ("ok", "slept")
    assert len(worker.blocked) == 1 and worker.blocked[0] >= 0.12


def test_a_task_done_in_its_first_step_is_not_registered_a_pending_one_is():
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        async def quick():
            return 1

        async def slow():
            await asyncio.sleep(0.05)

        async def main():
            done = await _start(quick(), loop, _Worker())
            assert done.done() and done.result() == 1
            assert done not in asyncio.all_tasks(loop)
            pending = await _start(slow(), loop, _Worker())
            assert pending in asyncio.all_tasks(loop)  # the server's drain and anyio's task listing see it
            await pending
            return pending.done()

        assert loop.run_until_complete(main()) is True
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_child_tasks_of_a_request_are_request_tasks_others_are_plain():
    async def scenario(loop):
        child = asyncio.get_running_loop().create_task(asyncio.sleep(0, "child"))
        return type(child).__name__, await child

    outcome, _, _ = _run(scenario, ours=True)
    assert outcome == ("ok", ("RequestTask", "child"))
    outcome, _, _ = _run(scenario, ours=False)
    assert outcome == ("ok", ("Task", "child"))


def test_set_result_is_refused_and_the_task_is_collected():
    async def scenario(loop):
        task = asyncio.current_task()
        with pytest.raises(RuntimeError):
            task.set_result(1)
        with pytest.raises(RuntimeError):
            task.set_exception(ValueError())
        return "refused"

    outcome, task, _ = _run(scenario, ours=True)
    assert outcome == ("ok", "refused")
    import weakref

    ref = weakref.ref(task)
    del task
    gc.collect()
    assert ref() is None


def test_timed_coroutine_under_asyncios_task_returns_raises_and_reports_a_slow_step():
    """The pool's streams run as asyncio's C Task over TimedCoroutine (hybrid/_speedups/steps.pyx)."""
    from hybrid._speedups.steps import TimedCoroutine

    reports = []

    async def returns():
        await asyncio.sleep(0)
        time.sleep(0.06)  # one slow step
        return 42

    async def raises():
        await asyncio.sleep(0)
        raise ValueError("from the app")

    async def main():
        loop = asyncio.get_running_loop()
        result = await loop.create_task(TimedCoroutine(returns(), lambda c, took, started: reports.append(took), 0.05))
        with pytest.raises(ValueError, match="from the app"):
            await loop.create_task(TimedCoroutine(raises(), lambda c, took, started: reports.append(took), 0.05))
        return result

    assert asyncio.run(main()) == 42
    assert len(reports) == 1 and reports[0] >= 0.05, reports


def test_the_step_that_ends_a_request_task_tells_its_connection_in_that_step():
    """Connection._start hands a task that outlives its first step its connection (``_hy_conn``): the step that
    ends the task calls ``_on_task_done`` before that step returns, and a response completed in a step of the
    task's own (``_hy_release``, what Connection.response_complete sets) is released at that step's end. Through
    a done callback or call_soon each came one loop iteration later, after what the app scheduled in that step."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    seen: list = []

    class _Conn:
        def _on_task_done(self, task):
            seen.append(("done", task.done(), task.result()))

        def _release_later(self, cycle):
            seen.append(("release", cycle))

    try:
        async def app(gate1, gate2):
            await gate1  # ends the first step: the task is pending
            asyncio.current_task()._hy_release = True  # the response is complete; the app goes on
            loop.call_soon(seen.append, "iteration after the second step")
            await gate2
            loop.call_soon(seen.append, "iteration after the last step")
            return "ok"

        async def main():
            gate1, gate2 = loop.create_future(), loop.create_future()
            task = await _start(app(gate1, gate2), loop, _Worker())
            task._hy_cycle = "the cycle"
            task._hy_conn = _Conn()
            for gate in (gate1, gate2):
                gate.set_result(None)
                for _ in range(5):  # a few loop iterations: the step runs, then what it scheduled
                    await asyncio.sleep(0)
            return task

        task = loop.run_until_complete(asyncio.wait_for(main(), 5))
        assert seen == [("release", "the cycle"), "iteration after the second step", ("done", True, "ok"),
                        "iteration after the last step"]
        assert task._hy_conn is None  # told once
    finally:
        asyncio.set_event_loop(None)
        loop.close()
