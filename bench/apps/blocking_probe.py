"""bench/apps/blocking.py with timestamps, for ``python -m bench.p99_probe`` (docs/performance.md, "Blocking mix:
where the slowest fast requests waited"): per request its kind, client port, thread, app start and end
(CLOCK_MONOTONIC ns); every garbage collection; every poll of the server's epoll sets with the client ports it
listed (the sets' ``epoll`` is wrapped: hybrid only, and only in this app). ``/probe-reset`` empties the records,
``/probe-dump`` writes them to the file named by ``PROBE_OUT``. Arrays of machine integers: recording allocates no
tracked object, so the probe adds no garbage collections of its own.
"""

import gc
import os
import threading
import time
from array import array

REQUESTS = array("q")  # kind (0 fast, 1 sleep), client port, thread id, start ns, end ns
COLLECTIONS = array("q")  # phase (0 start, 1 stop), generation, ns, thread id
POLLS = array("q")  # ns, thread id, n, n client ports (a listener or an eventfd: -fd)
_now = time.monotonic_ns
_tid = threading.get_native_id


def _gc(phase, info):
    COLLECTIONS.extend((0 if phase == "start" else 1, info["generation"], _now(), _tid()))


gc.callbacks.append(_gc)


class _RecordingEpoll:
    def __init__(self, epoll, conns):
        self._epoll = epoll
        self._conns = conns

    def poll(self, timeout=-1, maxevents=-1):
        events = self._epoll.poll(timeout, maxevents)
        ports = []
        for fd, _ in events:
            conn = self._conns.get(fd)
            ports.append(conn.client_addr[1] if conn is not None and conn.client_addr else -fd)
        POLLS.extend([_now(), _tid(), len(ports), *ports])  # (one call: threads do not interleave within it)
        return events

    def __getattr__(self, name):
        return getattr(self._epoll, name)


try:
    import hybrid.connection as _connection
except ImportError:  # another server: requests and collections only
    _connection = None
if _connection is not None:
    _init = _connection.ConnectionSet.__init__

    def _recording_init(self, listeners):
        _init(self, listeners)
        self.epoll = _RecordingEpoll(self.epoll, self.conns)

    _connection.ConnectionSet.__init__ = _recording_init


async def _answer(send, body):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    start = _now()
    path = scope["path"]
    if path == "/probe-dump":
        with open(os.environ["PROBE_OUT"], "wb") as f:
            for records in (REQUESTS, COLLECTIONS, POLLS):
                array("q", [len(records)]).tofile(f)
                records.tofile(f)
    if path in ("/probe-dump", "/probe-reset"):
        for records in (REQUESTS, COLLECTIONS, POLLS):
            del records[:]
        await _answer(send, b"ok")
        return
    kind = 1 if path == "/sleep" else 0
    if kind:
        time.sleep(0.05)
    await _answer(send, b"slept" if kind else b"fast")
    REQUESTS.extend((kind, scope["client"][1], _tid(), start, _now()))
