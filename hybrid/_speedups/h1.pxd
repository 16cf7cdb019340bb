# Typed declarations of the sans-I/O HTTP/1.1 protocol (h1.pyx): events and the protocol object.

cdef class Request:
    cdef readonly bytes method
    cdef readonly bytes target
    cdef readonly bytes path
    cdef readonly bytes query
    cdef readonly list headers
    cdef readonly str http_version
    cdef readonly bint keep_alive
    cdef readonly bint expect_continue
    cdef readonly object upgrade
    cdef readonly bint wants_stream
    cdef readonly bint forwarded  # a Forwarded or X-Forwarded-For/-Proto/-Host field is present
    cdef readonly bint te_trailers  # an HTTP/1.1 request whose TE says the client takes trailers


cdef class Data:
    cdef readonly bytes data


cdef class EndOfMessage:
    pass


cdef class H1Protocol:
    # parsing
    cdef object _parser
    cdef list _events
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
    cdef list _unanswered
    # limits and options
    cdef Py_ssize_t _max_head
    cdef Py_ssize_t _max_target
    cdef Py_ssize_t _max_headers
    cdef long long _max_body
    cdef bint _server_header
    cdef bint _date_header
    cdef bint _websocket
    cdef bytes _extra_headers  # --header lines, or None
    # the response being written
    cdef Request _responding
    cdef bint _resp_chunked
    cdef bint _resp_no_body
    cdef bint _resp_close
    cdef long long _resp_remaining
    cdef bint _closing

    cdef _fail(self, int status, str reason)
    cdef list _take_events(self)
    cdef _raise_parser_error(self, exc, data)
    cdef _check_transfer_coding(self, str http_version)
    cdef _finish_response(self)
    cpdef list feed(self, data)
    cpdef release(self)
    cpdef bytes send_response(self, int status, headers, long long content_length=*)
    cdef _app_transfer_coding(self, Request req, int status, list values, bint has_length, list out)
    cpdef bytes send_body(self, bytes data, bint more)
    cpdef bytes send_trailers(self, fields, bint first, bint more)
