# Typed declarations of h1_response.pyx: the response half of the HTTP/1.1 protocol (H1Protocol's base class).

from hybrid._speedups.h1_events cimport Request


cdef class H1Response:
    cdef list _unanswered  # requests whose response has not started, oldest first (appended by the parser)
    # options
    cdef bint _server_header
    cdef bint _date_header
    cdef bytes _extra_headers  # --header lines, or None
    # the response being written
    cdef Request _responding
    cdef bint _resp_chunked
    cdef bint _resp_no_body
    cdef bint _resp_close
    cdef long long _resp_remaining
    cdef bint _closing

    cdef _finish_response(self)
    cpdef bytes send_response(self, int status, headers, long long content_length=*, bytes body=*)
    cdef _app_transfer_coding(self, Request req, int status, list values, bint has_length, list out)
    cpdef bytes send_body(self, bytes data, bint more)
    cpdef bytes send_trailers(self, fields, bint first, bint more)
