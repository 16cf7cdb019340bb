# Typed declarations of the sans-I/O HTTP/1.1 protocol (h1.pyx): the parsing half, over its response half
# (h1_response.pxd); its events are h1_events.pxd's (cimported from here too).

from hybrid._speedups.h1_events cimport Data, EndOfMessage, Request
from hybrid._speedups.h1_response cimport H1Response


cdef class H1Protocol(H1Response):
    # parsing
    cdef object _parser
    cdef list _events
    cdef bytes _head_data  # the buffer being fed, when a request head starts it
    cdef list _url_parts
    cdef Py_ssize_t _url_len
    cdef list _headers
    cdef Py_ssize_t _head_len
    cdef Py_ssize_t _stalled_bytes
    cdef bint _in_head
    cdef bint _in_message
    cdef bint _progress
    cdef bint _expect_continue
    cdef bint _wants_stream
    cdef bint _forwarded
    cdef bint _te_trailers
    cdef object _upgrade
    cdef long long _content_length
    cdef bint _chunked
    cdef bytes _te_values
    cdef bint _te_padded
    cdef bytes _resume_head
    cdef bint _synthetic
    cdef bint _input_closed
    cdef bint _last_keep_alive
    cdef bint _switched
    cdef readonly bytes trailing_data
    cdef long long _body_len
    cdef int _host_count
    cdef bint _bad_host
    cdef object _error
    # limits and options
    cdef Py_ssize_t _max_head
    cdef Py_ssize_t _max_target
    cdef Py_ssize_t _max_headers
    cdef long long _max_body
    cdef bint _websocket

    cdef _fail(self, int status, str reason)
    cdef list _take_events(self)
    cdef _raise_parser_error(self, exc, data)
    cdef _check_transfer_coding(self, str http_version)
    cpdef list feed(self, data)
    cpdef release(self)
