# cython: language_level=3
"""StreamConnection: a Connection whose I/O goes through a SocketStream: the async pool's connections. Compiled.

The pool serves a handed-off request with the same request/response logic a worker uses (Connection), over a
SocketStream (streams.pyx) instead of an epoll set. PoolConnection (hybrid/async_pool.py) adds the serving and
the handing back; this holds the two I/O paths that run per event and per stream:
- ``send_now``: every event of a stream is one call from RequestCycle.send, straight into the stream's write
  (one ``send(2)``, buffering what the kernel did not take);
- the request's bytes arrive by the stream's data callback, not a reading task: a stream's app waits in
  ``receive()`` for the client to go away, and a reading task per stream cost a Task and two coroutine frames each.
"""

import time

from hybrid._speedups.connection cimport Connection
from hybrid._speedups.cycle cimport RequestCycle
from hybrid._speedups.streams cimport SocketStream

from hybrid._speedups.cycle import ClientDisconnected
from hybrid._speedups.streams import StreamClosed

cdef object _monotonic = time.monotonic
# Past this many bytes buffered in the stream, the app's send waits (finish_write): backpressure, not memory.
cdef Py_ssize_t SEND_HIGH_WATER = 65536


cdef class StreamConnection(Connection):
    """A Connection over ``stream``; the subclass sets ``stream`` and the Connection fields."""

    cdef public SocketStream stream
    cdef object _on_data_cb

    def __cinit__(self, *args, **kwargs):
        self._on_data_cb = self._on_data

    cpdef read_now(self):
        return False  # the stream reads by itself; want_read() asks for its bytes as events

    cpdef want_read(self):
        if not self.reading and not self.disconnected:
            self.reading = True
            self.stream.set_data_callback(self._on_data_cb)
        self._arm_body_timer()  # --timeout-request-body, as in the workers (Connection._body_stall_check)

    def _on_data(self):
        cdef SocketStream stream = self.stream
        cdef RequestCycle cycle
        data = stream.take()
        if not data:
            if stream.at_eof():  # EOF, the peer gone, or the stream closed
                self._lost()
            return
        self.last_active = _monotonic()  # body progress: what --timeout-request-body measures
        self._feed(data)
        if self.error is not None or self.cycle is None:
            self._stop_reading()
            return
        cycle = self.cycle
        if not cycle.wants_body:
            self._stop_reading()  # the app has what it asked for: stop until asked again

    cpdef _stop_reading(self):
        if self.reading:
            self.reading = False
            if self.stream is not None:
                self.stream.set_data_callback(None)

    cpdef send_now(self, data):
        """Write through the stream now; True when the app should wait for the client (see finish_write)."""
        cdef Py_ssize_t buffered
        try:
            buffered = self.stream.writelines(data) if type(data) is list else self.stream.write(data)
        except (StreamClosed, OSError) as exc:
            self._lost()
            raise ClientDisconnected(f"Client disconnected: {exc}") from None
        return True if buffered > SEND_HIGH_WATER else None
