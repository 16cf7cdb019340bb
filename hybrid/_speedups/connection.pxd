# Typed declarations of connection.pyx: one client connection (HTTP/1.1), so that compiled subclasses (the async
# pool's StreamConnection, stream_connection.pyx) extend it with direct calls.

from hybrid._speedups.h1 cimport H1Protocol
from hybrid._speedups.held cimport HeldBatch


cdef class Connection:
    cdef public object server, sock, home, worker, loop, cycle, backlog, error, body_timer, proxy
    cdef public object server_addr, client_addr
    cdef public H1Protocol proto
    cdef public int fd
    cdef public bint registered, disconnected, async_mode, reading
    cdef bint _plain  # a plain socket.socket: recv/send straight from C (a TLSConnection's SSLSocket is not)
    cdef object _tls  # an SSLSocket's _ssl object, read and written straight from C (tls_io.pyx); else None
    cdef dict _scope_base  # the scope's per-connection entries, copied per request (cycle.pyx, scope_template)
    # What _start reads of the server for every request and the server never changes once it serves: read at
    # the connection's first request (_first_request) instead of as Python attributes per request.
    cdef object _request_ids, _router, _app, _concurrency, _lifecycle
    cdef public double last_active, head_since, discard_since
    cdef public double handshake_deadline  # a TLSConnection still handshaking is closed past this (monotonic)
    cdef public Py_ssize_t discard_budget
    # A response's last bytes held until the end of the set owner's batch (send_last, flush_held), and that
    # batch's list while on_readable runs (None otherwise).
    cdef public object held_out
    cdef HeldBatch _batch
    cdef dict __dict__  # (subclasses and tests may add attributes)

    cpdef on_readable(self, worker, HeldBatch batch=*)
    cdef object _recv_other(self)
    cpdef _feed(self, data)
    cpdef _route_body(self)
    cpdef read_now(self)
    cpdef want_read(self)
    cpdef _stop_reading(self)
    cpdef _lost(self)
    cpdef send_now(self, data)
    cpdef send_last(self, data)
    cpdef _serve(self)
    cpdef _start(self, request)
    cdef dict _first_request(self, server)
    cpdef _settle(self)
    cpdef leave_set(self)
    cdef _unregister(self)
    cpdef _complete(self, task)
    cpdef answer_error(self, exc, cycle=*)
    cpdef close(self)
