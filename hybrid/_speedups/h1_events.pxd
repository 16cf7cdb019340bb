# Typed declarations of h1_events.pyx: the events of the sans-I/O HTTP/1.1 protocol (h1.pyx).

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
