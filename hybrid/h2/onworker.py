"""An HTTP/2 stream's app on the worker thread that owns the connection's home set (see crossing.py for why).

``SyncWorker._serve_resumed`` calls ``run_stream`` for each stream the session queued in the set
(``ConnectionSet.wake_h2``): the first step runs at once in a RequestTask, marked for the monitor like an
HTTP/1.1 request's, so a step that blocks is taken over (the set, and the streams queued after it, go to a
spare) and reported with the stream's route (``left_blocked``, ``step_blocked``: the stream stands for the
request's cycle, it has the scope).

One crossing per response: the last body a first step sends (most responses) is kept on the stream
(``H2Stream.last_body``) until the step returns, then posted to the pool with the app's end when the step ended
the app (``crossing.finish``), alone when the app goes on (its response must not wait for the app's end).
"""

from __future__ import annotations

from hybrid.asgi.task import start_request_task
from hybrid.h2 import crossing, report


def run_stream(worker, stream) -> None:
    session = stream.session
    stream.app_loop = worker.loop
    stream.inbox = worker.inbox  # (before the check below: a reset from now on reaches this loop)
    if stream.gone:  # reset (or the connection lost) while queued: the app never starts
        session.pool.h2_inbox.post(crossing.app_ended, stream, None, False)
        return
    server = worker.server
    if server.lifecycle is not None:  # (on this thread, before the app, as for HTTP/1.1)
        report.started(server, stream, "worker")
    scope = stream.scope
    scope["state"] = worker.state.copy()  # (this loop's lifespan state, as for HTTP/1.1)
    app = server.app
    limit = server.concurrency
    if limit is not None:  # --limit-concurrency: past it, a built-in app answers 503
        app = limit.admit(app)
    monitor = worker.monitor  # (SyncWorker.enter_app / leave_app, without their Python calls)
    monitor.enter(worker.slot, -1)
    stream.first_step = True
    try:
        task = start_request_task(app(scope, stream.receive, stream.send), worker.loop, worker)
    except BaseException as exc:  # noqa: BLE001 - the app object could not even be called
        task = worker.loop.create_future()
        task.set_exception(exc)
    finally:
        stream.first_step = False
        if monitor.leave(worker.slot):  # (rare: the step blocked)
            worker.left_blocked(None, stream)
    if limit is not None and app is server.app:
        task.add_done_callback(limit.release)
    body = stream.last_body
    if body is not None:
        stream.last_body = None
        if task.done():  # the response and the app's end in one post
            exc = None if task.cancelled() else task.exception()
            session.pool.h2_inbox.post(crossing.finish, stream, body, exc)
            return
        session.pool.h2_inbox.post(crossing.write, stream, body, True, None)
    if task.done():
        _ended(stream, task)
    else:
        stream.app_task = task
        task._hy_cycle = stream  # (names the route if a later step blocks)
        task.add_done_callback(lambda t: _ended(stream, t))


def _ended(stream, task) -> None:
    stream.app_task = None
    exc = None if task.cancelled() else task.exception()
    stream.session.pool.h2_inbox.post(crossing.app_ended, stream, exc)
