# Typed declarations of cycle.pyx: one request/response exchange (ASGI HTTP).

from hybrid._speedups.h1 cimport Request

cpdef dict scope_template(conn, str root_path)
cpdef dict scope_from(dict template, conn, Request req, dict state, ids, request_id)
cdef object _lazy_id(ids, headers)  # a LazyRequestId (request_id.py), made in C (h2scope.pyx too)

cdef class RequestCycle:
    cdef public object conn, request, scope, headers, waiter, task, held, hold_timer, flushing
    cdef public list body
    cdef public Py_ssize_t body_size, sent, received
    cdef public bint body_complete, request_delivered, continue_pending, response_started, head_sent
    cdef public bint response_complete, wrote, admitted, stream_known, writing
    cdef public bint trailers, body_ended, trailers_sent  # declared; last body message came; some went out
    cdef public int status
    cdef public double started, body_since

    cpdef add_body(self, bytes data)
    cpdef end_body(self)
    cpdef fail_body(self)
    cpdef wake(self)
    cdef _start_response(self, dict message)
