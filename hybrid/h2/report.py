"""What an HTTP/2 stream tells the access log and the lifecycle collector, as an HTTP/1.1 request does
(hybrid/server.py, ``lifecycle_started``/``lifecycle_completed``).

A stream whose app started gets one ``RequestStarted`` (on the thread that runs the app, before its first step)
and exactly one ``ResponseCompleted`` (on the pool's loop, once all the app sent was applied), both keyed by the
connection's fd and the stream id: many streams share one connection, and its ``ConnectionClosed`` does not end
them. A stream reset before its response went out whole still gets its ``ResponseCompleted``, with ``complete``
False (its in-flight count must end, and no connection close will end it; MetricsCollector does not count it as a
response, as it counts no HTTP/1.1 response cut short): ``status`` is what the app had sent, 0 when no response
head went out. A stream whose app never started (reset while queued) gets neither, unless the server answered it
(a 413): then its ResponseCompleted alone, as HTTP/1.1 reports an answer made before the app.
"""

from __future__ import annotations

from time import monotonic_ns, perf_counter

from hybrid import lifecycle
from hybrid.logs import log_http_access
from hybrid.request_id import request_id_of


def started(server, stream, where: str) -> None:
    """The stream's app is about to start (the caller checked ``server.lifecycle is not None``)."""
    fd = stream.session.fd
    if server.lifecycle is server.metrics:  # the built-in collector alone: no event object, no request id
        server.metrics.request_started((fd, stream.id), where)
        return
    scope = stream.scope
    server.lifecycle.event(lifecycle.RequestStarted(monotonic_ns(), fd, request_id_of(scope), scope["method"],
                                                    scope["path"], where, stream.id))


def ended(session, stream, where: str, ran: bool = True) -> None:
    """The stream's app ended and what it sent was applied: its access log line and its ResponseCompleted.
    ``ran``: False for an app that never started (no RequestStarted went out for it): reported only if the server
    answered it itself (a 413 for a body over --limit-request-body), as HTTP/1.1's ``Server.server_answered``."""
    server = session.server
    status = stream.status
    if server.access_log and status is not None:
        log_http_access(session, stream, where)
    if server.lifecycle is None or not (ran or status is not None):
        return  # (an app that never started, and no answer from the server either: nothing happened to report)
    status = status or 0  # (0: no response head went out: the client reset the stream, or left, first)
    complete = stream.complete  # (the app's last body message, or the server's 500/408/413, went to h2)
    seconds = perf_counter() - stream.started
    if server.lifecycle is server.metrics:
        if complete:
            server.metrics.response_completed((session.fd, stream.id), status, stream.sent, seconds, where)
        else:
            server.metrics.request_ended((session.fd, stream.id))
        return
    server.lifecycle.event(lifecycle.ResponseCompleted(monotonic_ns(), session.fd, request_id_of(stream.scope),
                                                       status, stream.sent, int(seconds * 1e9), where, stream.id,
                                                       complete))
