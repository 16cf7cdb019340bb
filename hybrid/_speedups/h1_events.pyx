# cython: language_level=3
"""The events H1Protocol (h1.pyx) returns from ``feed()``: a request head, a piece of its body, its end.

Their own module because both halves of the protocol read them: the parser (h1.pyx) makes them, the response
framing (h1_response.pyx) reads the request it answers (its version, method, keep-alive, TE: trailers).
"""


cdef class Request:
    """A request head. ``path`` and ``query`` are the raw (still percent-encoded) parts of ``target``."""

    def __repr__(self):
        return f"<Request {self.method!r} {self.target!r} HTTP/{self.http_version}>"


cdef class Data:
    """A piece of a request body."""

    def __init__(self, bytes data):
        self.data = data

    def __repr__(self):
        return f"<Data {len(self.data)} bytes>"


cdef class EndOfMessage:
    """The request body (possibly empty) is complete."""

    def __repr__(self):
        return "<EndOfMessage>"
