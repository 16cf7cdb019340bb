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

import threading
from bisect import bisect_left
from dataclasses import MISSING, dataclass, fields
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
    # (a field with a default keeps it: added fields leave the callers that predate them working)
    params = [f.name if f.default is MISSING else f"{f.name}=_default_{f.name}" for f in fields(cls)]
    namespace.update({f"_default_{f.name}": f.default for f in fields(cls) if f.default is not MISSING})
    source = f"def __init__(self, {', '.join(params)}):\n" + "".join(
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
    where: str  # "worker" or "pool" (handed off before any app code ran)
    stream_id: int = 0  # HTTP/2: the request's stream on the connection ``fd`` (0: HTTP/1.1)


@_quick_init
@dataclass(frozen=True, slots=True)
class HandedOff:
    """A connection went to the async pool (``StreamingHandoff`` or ``WebSocketHandoff``)."""

    t_ns: int
    fd: int
    request_id: str
    kind: str  # "stream" or "websocket"


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
    stream_id: int = 0  # HTTP/2: as RequestStarted's (each started stream ends with one ResponseCompleted)
    # False: an HTTP/2 stream reset (or its connection lost) before its response went out whole; ``status`` is
    # what the app had sent, 0 if nothing. (HTTP/1.1 sends no ResponseCompleted then: its ConnectionClosed ends it.)
    complete: bool = True


@_quick_init
@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    """The client went away while its connection was being served (a failed write or read, EOF mid-request)."""

    t_ns: int
    fd: int


@_quick_init
@dataclass(frozen=True, slots=True)
class WebSocketOpened:
    """A WebSocket over HTTP/2 (RFC 8441) started, before its app ran: one stream of the connection ``fd``. (An
    HTTP/1.1 WebSocket is a ``HandedOff`` of kind "websocket", ended by its ``ConnectionClosed``.)"""

    t_ns: int
    fd: int
    stream_id: int
    request_id: str


@_quick_init
@dataclass(frozen=True, slots=True)
class WebSocketClosed:
    """That WebSocket is over, whatever ended it (close handshake, RST_STREAM, connection lost, app error,
    shutdown): exactly once per ``WebSocketOpened``."""

    t_ns: int
    fd: int
    stream_id: int


LifecycleEvent = (ConnectionOpened | ConnectionClosed | RequestStarted | HandedOff | TakenOver | ResponseCompleted
                  | ClientDisconnected | WebSocketOpened | WebSocketClosed)


class FanOut:
    """Several collectors as one."""

    def __init__(self, *collectors: LifecycleCollector) -> None:
        self.collectors = collectors

    def event(self, event) -> None:
        for collector in self.collectors:
            collector.event(event)


DURATION_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


class _Tally:
    """What one serving thread counted of its requests, cumulative (MetricsCollector, one process): that thread
    alone writes here, with plain integer steps; ``MetricsCollector.flush`` reads it and adds what is new."""

    __slots__ = ("started", "responses", "sent", "in_flight", "durations")

    def __init__(self) -> None:
        self.started: dict[str, int] = {}  # where -> requests
        self.responses: dict[tuple, int] = {}  # (where, status class) -> responses
        self.sent = 0
        self.in_flight = 0  # started minus finished
        self.durations: dict[str, list] = {}  # where -> [count per bucket, +Inf's count, sum of seconds]


class MetricsCollector:
    """Counts events into Prometheus metrics (prometheus-client), served by ``start(host, port)``.

    In a worker process of a supervisor the values go to the run's multiprocess directory and the supervisor
    serves them (hybrid/metrics.py); gauges say how to combine the workers (``multiprocess_mode``).

    Every request is counted in ``request_started`` and ``response_completed`` (the server calls them directly
    when this is the only collector: no event object, no request id is made for it). In one process, those
    only step the calling thread's ``_Tally``; a scrape first adds what the tallies gained to the Prometheus
    metrics (``flush``, run by the registry before it collects). A prometheus-client update takes a lock and
    checks its labels: seven of them per request cost more than the plain-text request itself
    (bench/results/2026-11-28-access-log-compiled.md). With worker processes each update goes to the shared
    files at once instead: the supervisor reads them at any time, and a worker may die without a last flush."""

    def __init__(self) -> None:
        import os

        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.batched = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # (prometheus-client's own switch)
        if self.batched:
            registry.register(_FlushFirst(self))  # (registered first: collected first)
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
        # (labels bounded by hybrid/blocking_sites.py: the first SITES_LIMIT pairs, then route=location="other")
        self.blocked_seconds = Counter("hybrid_blocked_seconds", "Seconds handlers blocked their thread or loop, "
                                       "by route and the code location where they were blocked",
                                       ["route", "location"], registry=registry)
        self.started = Counter("hybrid_requests_started", "Requests whose app started", ["where"],
                               registry=registry)
        self.responses = Counter("hybrid_responses", "Complete responses, by status class", ["where", "status"],
                                 registry=registry)
        self.sent = Counter("hybrid_response_body_bytes", "Response body bytes sent", registry=registry)
        self.duration = Histogram("hybrid_request_duration_seconds", "From the request head to the response's "
                                  "end", ["where"], registry=registry, buckets=DURATION_BUCKETS)
        self.handoffs = Counter("hybrid_handoffs", "Connections handed to the async pool", ["kind"],
                                registry=registry)
        self.takeovers = Counter("hybrid_takeovers", "Connection sets taken over from a blocked thread",
                                 registry=registry)
        self.disconnects = Counter("hybrid_client_disconnects", "Clients gone while being served",
                                   registry=registry)
        # fd -> what it is, for the gauges that an fd's ConnectionClosed ends (fds are not reused while open)
        self._in_flight: dict[int, int] = {}
        self._pool_kind: dict[int, object] = {}
        self._pool_gauges = {"stream": self.streams, "websocket": self.websockets}
        self._h2_websockets: set[tuple[int, int]] = set()  # (fd, stream id) of the HTTP/2 WebSockets open
        # Labelled children, looked up once each (``labels()`` takes a lock and builds a key every call).
        self._started_for: dict = {}
        self._completed_for: dict = {}
        # One process: each thread's tally, and what flush() already took of it (flush alone reads both).
        self._local = threading.local()
        self._tallies: list[tuple[_Tally, _Tally]] = []
        self._flush_lock = threading.Lock()
        self._by_type = {
            ConnectionOpened: self._opened, ConnectionClosed: self._closed, RequestStarted: self._started,
            HandedOff: self._handed_off, TakenOver: self._taken_over, ResponseCompleted: self._completed,
            ClientDisconnected: self._disconnected, WebSocketOpened: self._ws_opened,
            WebSocketClosed: self._ws_closed,
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
        sid = event.stream_id
        self.request_started((event.fd, sid) if sid else event.fd, event.where)

    def _completed(self, event: ResponseCompleted) -> None:
        sid = event.stream_id
        key = (event.fd, sid) if sid else event.fd
        if not event.complete:
            self.request_ended(key)
            return
        self.response_completed(key, event.status, event.bytes, event.duration_ns / 1e9, event.where)

    def _tally(self) -> _Tally:
        try:
            return self._local.tally
        except AttributeError:
            tally = self._local.tally = _Tally()
            with self._flush_lock:
                self._tallies.append((tally, _Tally()))
            return tally

    def request_started(self, key, where: str) -> None:
        """``key``: the connection's fd, or (fd, stream id) for an HTTP/2 stream (many share one connection)."""
        first = key not in self._in_flight  # (counted once per key until its response completes)
        if first:
            self._in_flight[key] = 1
        if self.batched:
            tally = self._tally()
            started = tally.started
            started[where] = started.get(where, 0) + 1
            if first:
                tally.in_flight += 1
            return
        if first:
            self.in_flight.inc()
        child = self._started_for.get(where)
        if child is None:
            child = self._started_for[where] = self.started.labels(where)
        child.inc()

    def response_completed(self, key, status: int, sent: int, seconds: float, where: str) -> None:
        finished = self._in_flight.pop(key, None) is not None
        if where != "worker":  # a stream's end (its socket may go back to a serving thread, not close)
            gauge = self._pool_kind.pop(key, None)
            if gauge is not None:
                gauge.dec()
        if self.batched:
            tally = self._tally()
            key = (where, status // 100)
            responses = tally.responses
            responses[key] = responses.get(key, 0) + 1
            if finished:
                tally.in_flight -= 1
            tally.sent += sent
            counts = tally.durations.get(where)
            if counts is None:
                counts = tally.durations[where] = [0] * (len(DURATION_BUCKETS) + 1) + [0.0]
            counts[bisect_left(DURATION_BUCKETS, seconds)] += 1  # (a bucket counts values <= its bound)
            counts[-1] += seconds
            return
        children = self._children(where, status // 100)
        if finished:
            self.in_flight.dec()
        children[0].inc()
        self.sent.inc(sent)
        children[1].observe(seconds)

    def request_ended(self, key) -> None:
        """A request ended without a whole response (an HTTP/2 stream reset by the client): out of flight, and
        not a response, as an HTTP/1.1 request whose client left is ended by its ConnectionClosed."""
        if self._in_flight.pop(key, None) is None:
            return
        if self.batched:
            self._tally().in_flight -= 1
        else:
            self.in_flight.dec()

    def _children(self, where: str, status_class: int) -> tuple:
        key = (where, status_class)
        children = self._completed_for.get(key)
        if children is None:
            children = self._completed_for[key] = (self.responses.labels(where, f"{status_class}xx"),
                                                   self.duration.labels(where))
        return children

    def flush(self) -> None:
        """Add what the threads' tallies gained since the last flush to the Prometheus metrics (one process)."""
        with self._flush_lock:
            for tally, taken in self._tallies:
                for where, n in list(tally.started.items()):  # (list(): one step, however the thread goes on)
                    new = n - taken.started.get(where, 0)
                    if new:
                        taken.started[where] = n
                        child = self._started_for.get(where)
                        if child is None:
                            child = self._started_for[where] = self.started.labels(where)
                        child.inc(new)
                for (where, status_class), n in list(tally.responses.items()):
                    new = n - taken.responses.get((where, status_class), 0)
                    if new:
                        taken.responses[(where, status_class)] = n
                        self._children(where, status_class)[0].inc(new)
                for name, metric in (("sent", self.sent), ("in_flight", self.in_flight)):
                    now = getattr(tally, name)
                    new = now - getattr(taken, name)
                    if new:
                        setattr(taken, name, now)
                        metric.inc(new)
                for where, counts in list(tally.durations.items()):
                    counts = list(counts)
                    before = taken.durations.get(where) or [0] * len(counts)
                    taken.durations[where] = counts
                    _add_observations(self.duration.labels(where), [a - b for a, b in zip(counts, before, strict=True)])

    def _handed_off(self, event: HandedOff) -> None:
        self.handoffs.labels(event.kind).inc()
        gauge = self._pool_gauges.get(event.kind)
        if gauge is not None and event.fd not in self._pool_kind:
            self._pool_kind[event.fd] = gauge
            gauge.inc()

    def _ws_opened(self, event: WebSocketOpened) -> None:
        key = (event.fd, event.stream_id)
        if key not in self._h2_websockets:
            self._h2_websockets.add(key)
            self.websockets.inc()

    def _ws_closed(self, event: WebSocketClosed) -> None:
        key = (event.fd, event.stream_id)
        if key in self._h2_websockets:  # (set operations: atomic under the GIL; only the pool's loop calls these)
            self._h2_websockets.discard(key)
            self.websockets.dec()

    def _taken_over(self, event: TakenOver) -> None:
        self.takeovers.inc()

    def _disconnected(self, event: ClientDisconnected) -> None:
        self.disconnects.inc()

    # -- not events: called by the server ------------------------------------------------------------------

    def blocked_loop(self) -> None:
        self.blocked_loops.inc()

    def blocked_at(self, route: str, location: str, seconds: float) -> None:
        self.blocked_seconds.labels(route, location).inc(seconds)

    def sample_threads(self, serving: int, blocked: int, spare: int) -> None:
        """Thread counts, set by the server's main loop twice a second."""
        self.threads.labels("serving").set(serving)
        self.threads.labels("blocked").set(blocked)
        self.threads.labels("spare").set(spare)


class _FlushFirst:
    """Registered first in the collector's registry, so it runs first at each scrape: the tallies are flushed
    into the metrics the registry then collects. It exposes nothing itself."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.collector = collector

    def describe(self) -> list:
        return []

    def collect(self) -> list:
        self.collector.flush()
        return []


def _add_observations(histogram, new: list) -> None:
    """Add counted observations to a prometheus-client Histogram child: ``new`` is the count per bucket (the last
    one +Inf's) and then their sum. Histogram has no public call for that; its per-bucket values and sum are
    attributes it has kept since its early versions, checked here so that a prometheus-client without them
    fails loudly at the first scrape (tests/test_lifecycle.py scrapes)."""
    *counts, total = new
    buckets, value_sum = histogram._buckets, histogram._sum
    if len(buckets) != len(counts):
        raise RuntimeError(f"prometheus-client Histogram has {len(buckets)} buckets, expected {len(counts)}")
    for value, n in zip(buckets, counts, strict=True):
        if n:
            value.inc(n)
    if total:
        value_sum.inc(total)

