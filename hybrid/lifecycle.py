"""Lifecycle events: what happens to connections and requests, for a collector (metrics, tracing, tests).

Attach one with ``hybrid.run(app, lifecycle_collector=obj)`` (any object with an ``event(event)`` method, see
``LifecycleCollector``) or ``--metrics-port`` (``MetricsCollector``, Prometheus text). Events are frozen
dataclasses stamped with ``time.monotonic_ns()``. ``event`` is called on the thread where the thing happened (a
serving thread, the async pool's thread), inline: it must be quick and thread-safe, and must not raise.

Without a collector the cost is one ``is None`` test at each place an event could be made: nothing is built.
``fd`` is the connection's socket descriptor: stable while the connection lives (across a handoff to the async
pool and back), reused by the kernel after it closes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable


@runtime_checkable
class LifecycleCollector(Protocol):
    def event(self, event: LifecycleEvent) -> None: ...


def _quick_init(cls):
    """Give a frozen slotted dataclass an ``__init__`` that stores each field through its slot directly.

    The generated one calls ``object.__setattr__(self, NAME, value)`` per field (a name lookup each): about 2 µs for
    a 6-field event, this about 1 µs. Everything else (frozen, eq, repr, hash, match) stays the dataclass's."""
    names = [f.name for f in fields(cls)]
    namespace = {f"_set_{name}": cls.__dict__[name].__set__ for name in names}
    source = f"def __init__(self, {', '.join(names)}):\n" + "".join(
        f"    _set_{name}(self, {name})\n" for name in names)
    exec(source, namespace)  # noqa: S102 - as dataclasses itself builds __init__
    namespace["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = namespace["__init__"]
    return cls


@_quick_init
@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    t_ns: int
    fd: int
    client: tuple | None
    server: tuple | None


@_quick_init
@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    t_ns: int
    fd: int


@_quick_init
@dataclass(frozen=True, slots=True)
class RequestStarted:
    t_ns: int
    fd: int
    request_id: str
    method: str
    path: str
    where: str  # "worker", "pool" (handed off before any app code ran) or "pool-rerun"


@_quick_init
@dataclass(frozen=True, slots=True)
class HandedOff:
    """A connection went to the async pool (``StreamingHandoff`` or ``WebSocketHandoff``)."""

    t_ns: int
    fd: int
    request_id: str
    kind: str  # "stream" or "websocket"
    rerun: bool  # a GET/HEAD the worker abandoned after its app started streaming


@_quick_init
@dataclass(frozen=True, slots=True)
class TakenOver:
    """A spare thread took over the connection set of a thread blocked in a handler."""

    t_ns: int
    thread: str  # the spare that now owns the set
    set_fd: int


@_quick_init
@dataclass(frozen=True, slots=True)
class ResponseCompleted:
    t_ns: int
    fd: int
    request_id: str
    status: int
    bytes: int  # response body bytes the app sent
    duration_ns: int  # from the request head to the response's end
    where: str


@_quick_init
@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    """The client went away while its connection was being served (a failed write or read, EOF mid-request)."""

    t_ns: int
    fd: int


LifecycleEvent = (ConnectionOpened | ConnectionClosed | RequestStarted | HandedOff | TakenOver | ResponseCompleted
                  | ClientDisconnected)


class FanOut:
    """Several collectors as one."""

    def __init__(self, *collectors: LifecycleCollector) -> None:
        self.collectors = collectors

    def event(self, event) -> None:
        for collector in self.collectors:
            collector.event(event)


class MetricsCollector:
    """Counts events into Prometheus metrics (prometheus-client), served by ``start(host, port)``.

    In a worker process of a supervisor the values go to the run's multiprocess directory and the supervisor
    serves them (hybrid/metrics.py); gauges say how to combine the workers (``multiprocess_mode``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.opened = Counter("hybrid_connections_opened", "Connections accepted", registry=registry)
        self.closed = Counter("hybrid_connections_closed", "Connections closed", registry=registry)
        # With worker processes (prometheus-client's multiprocess mode): the sum over the live workers.
        self.open = Gauge("hybrid_connections_open", "Connections open now", registry=registry,
                          multiprocess_mode="livesum")
        self.in_flight = Gauge("hybrid_requests_in_flight", "Requests started and not yet answered in full (open "
                               "streams included)", registry=registry, multiprocess_mode="livesum")
        self.streams = Gauge("hybrid_streams_open", "Streamed responses served by the async pool now",
                             registry=registry, multiprocess_mode="livesum")
        self.websockets = Gauge("hybrid_websockets_open", "WebSockets open now", registry=registry,
                                multiprocess_mode="livesum")
        self.threads = Gauge("hybrid_threads", "Serving threads by state: serving (owns a connection set), "
                             "blocked (in a handler, its set taken over), spare (ready for a takeover)",
                             ["state"], registry=registry, multiprocess_mode="livesum")
        self.blocked_loops = Counter("hybrid_blocked_loop_steps", "Steps of async code that blocked an event loop "
                                     "while other requests waited on it", registry=registry)
        self.started = Counter("hybrid_requests_started", "Requests whose app started", ["where"],
                               registry=registry)
        self.responses = Counter("hybrid_responses", "Complete responses, by status class", ["where", "status"],
                                 registry=registry)
        self.sent = Counter("hybrid_response_body_bytes", "Response body bytes sent", registry=registry)
        self.duration = Histogram("hybrid_request_duration_seconds", "From the request head to the response's "
                                  "end", ["where"], registry=registry,
                                  buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.handoffs = Counter("hybrid_handoffs", "Connections handed to the async pool", ["kind", "rerun"],
                                registry=registry)
        self.takeovers = Counter("hybrid_takeovers", "Connection sets taken over from a blocked thread",
                                 registry=registry)
        self.disconnects = Counter("hybrid_client_disconnects", "Clients gone while being served",
                                   registry=registry)
        # fd -> what it is, for the gauges that an fd's ConnectionClosed ends (fds are not reused while open)
        self._in_flight: dict[int, int] = {}
        self._pool_kind: dict[int, object] = {}
        self._pool_gauges = {"stream": self.streams, "websocket": self.websockets}
        # Labelled children, looked up once each (``labels()`` takes a lock and builds a key every call).
        self._started_for: dict = {}
        self._completed_for: dict = {}
        self._by_type = {
            ConnectionOpened: self._opened, ConnectionClosed: self._closed, RequestStarted: self._started,
            HandedOff: self._handed_off, TakenOver: self._taken_over, ResponseCompleted: self._completed,
            ClientDisconnected: self._disconnected,
        }

    def start(self, host: str, port: int):
        from prometheus_client import start_http_server

        return start_http_server(port, addr=host, registry=self.registry)

    def event(self, event) -> None:
        self._by_type[type(event)](event)

    def _opened(self, event: ConnectionOpened) -> None:
        self.opened.inc()
        self.open.inc()

    def _closed(self, event: ConnectionClosed) -> None:
        self.closed.inc()
        self.open.dec()
        if self._in_flight.pop(event.fd, None) is not None:  # a request that ended without its response
            self.in_flight.dec()
        gauge = self._pool_kind.pop(event.fd, None)
        if gauge is not None:
            gauge.dec()

    def _started(self, event: RequestStarted) -> None:
        if event.fd not in self._in_flight:  # (a re-run in the pool is the same request)
            self._in_flight[event.fd] = 1
            self.in_flight.inc()
        child = self._started_for.get(event.where)
        if child is None:
            child = self._started_for[event.where] = self.started.labels(event.where)
        child.inc()

    def _handed_off(self, event: HandedOff) -> None:
        self.handoffs.labels(event.kind, "true" if event.rerun else "false").inc()
        gauge = self._pool_gauges.get(event.kind)
        if gauge is not None and event.fd not in self._pool_kind:
            self._pool_kind[event.fd] = gauge
            gauge.inc()

    def _taken_over(self, event: TakenOver) -> None:
        self.takeovers.inc()

    def _completed(self, event: ResponseCompleted) -> None:
        key = (event.where, event.status // 100)
        children = self._completed_for.get(key)
        if children is None:
            children = self._completed_for[key] = (self.responses.labels(event.where, f"{key[1]}xx"),
                                                   self.duration.labels(event.where))
        if self._in_flight.pop(event.fd, None) is not None:
            self.in_flight.dec()
        if event.where != "worker":  # a stream's end (its socket may go back to a serving thread, not close)
            gauge = self._pool_kind.pop(event.fd, None)
            if gauge is not None:
                gauge.dec()
        children[0].inc()
        self.sent.inc(event.bytes)
        children[1].observe(event.duration_ns / 1e9)

    def _disconnected(self, event: ClientDisconnected) -> None:
        self.disconnects.inc()

    # -- not events: called by the server ------------------------------------------------------------------

    def blocked_loop(self) -> None:
        self.blocked_loops.inc()

    def sample_threads(self, serving: int, blocked: int, spare: int) -> None:
        """Thread counts, set by the server's main loop twice a second."""
        self.threads.labels("serving").set(serving)
        self.threads.labels("blocked").set(blocked)
        self.threads.labels("spare").set(spare)
