# cython: language_level=3
"""A response's HEADERS and its body's DATA frame, serialized in one compiled step (issue 26).

Why: h2's ``send_headers`` + ``send_data`` were half of its cost per request (hyperframe frame objects, their
Flags sets and serialization, header tuples re-encoded, state-machine calls through the connection). This
writes the same bytes h2 would into h2's own output buffer and moves h2's state exactly as those two calls do,
through the smallest set of its objects, so every later h2 call (a reset, a WINDOW_UPDATE, data_to_send, a
frame received on the stream) sees what it would have seen:

- the connection's state machine: in SERVER_OPEN, SEND_HEADERS and SEND_DATA lead to SERVER_OPEN and run
  nothing, so they are skipped there; in any other state nothing is done here (0) and h2 decides (it raises);
- the stream's state machine: the inputs h2 gives it (SEND_HEADERS, SEND_DATA, SEND_END_STREAM), in h2's
  order, through h2's own transition table (h2machine.pyx), before the header block is encoded (as h2: an
  invalid state raises its error with the HPACK context untouched);
- flow control: a DATA frame is written only if it fits the stream's window, the connection's window and
  the peer's frame size (h2's own checks); both windows shrink by its length, as h2's do;
- HPACK: the block is encoded by the connection's own encoder (hpack_codec), cut into HEADERS + CONTINUATION
  frames at the stream's max frame size, as h2 does.
Anything else (an informational status, trailers, a stream h2 no longer holds) is left to h2 (0).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from h2.connection import ConnectionState
from h2.stream import StreamInputs

from hybrid._speedups.h2machine cimport Steps
from hybrid._speedups.hpack_codec cimport Encoder

cdef object SERVER_OPEN = ConnectionState.SERVER_OPEN
cdef Steps SEND_HEADERS = Steps(StreamInputs.SEND_HEADERS)
cdef Steps SEND_DATA = Steps(StreamInputs.SEND_DATA)
cdef Steps SEND_END_STREAM = Steps(StreamInputs.SEND_END_STREAM)

cdef enum:
    DATA = 0x0
    HEADERS = 0x1
    CONTINUATION = 0x9
    END_STREAM = 0x1
    END_HEADERS = 0x4


cdef inline unsigned char *_frame_head(unsigned char *p, Py_ssize_t length, int kind, int flags,
                                       unsigned long sid) noexcept:
    """RFC 9113 section 4.1: length (24 bits), type, flags, reserved bit and stream id (31 bits)."""
    p[0] = (length >> 16) & 0xff
    p[1] = (length >> 8) & 0xff
    p[2] = length & 0xff
    p[3] = kind
    p[4] = flags
    p[5] = (sid >> 24) & 0x7f
    p[6] = (sid >> 16) & 0xff
    p[7] = (sid >> 8) & 0xff
    p[8] = sid & 0xff
    return p + 9


def send_response(conn, unsigned long sid, list headers, bytes body, bint end, bint with_body=True) -> int:
    """Queue a response's HEADERS (``headers``: ``:status`` first, all bytes, normalized) and, when it fits and
    ``with_body``, ``body`` in one DATA frame, ``end`` setting END_STREAM on the last frame, into h2's output.

    Returns 2 when all of it was queued, 1 when only the HEADERS were (without END_STREAM: ``body`` is not empty
    and does not fit, the caller sends it through h2), 0 when nothing was done and the caller must use h2.
    h2's errors (an H2Error subclass) are raised as h2's own calls would raise them."""
    if conn.state_machine.state is not SERVER_OPEN:
        return 0
    stream = conn.streams.get(sid)
    if stream is None:
        return 0
    machine = stream.state_machine
    if machine.headers_sent:  # (trailers: h2's path)
        return 0
    status = <bytes>headers[0][1]
    if PyBytes_GET_SIZE(status) and PyBytes_AS_STRING(status)[0] == b"1":  # informational: h2's path
        return 0
    cdef Py_ssize_t size = PyBytes_GET_SIZE(body)
    cdef bint data_frame = with_body and size > 0 and size <= stream.outbound_flow_control_window \
        and size <= conn.outbound_flow_control_window and size <= conn.max_outbound_frame_size
    cdef bint headers_end = end and size == 0
    SEND_HEADERS.run(machine)  # (after it, SEND_DATA and SEND_END_STREAM are valid: OPEN or HALF_CLOSED_REMOTE)
    if headers_end:
        SEND_END_STREAM.run(machine)
    elif data_frame:
        SEND_DATA.run(machine)
        if end:
            SEND_END_STREAM.run(machine)
    encoder = conn.encoder
    cdef bytes block = (<Encoder>encoder).encode(headers) if type(encoder) is Encoder else encoder.encode(headers)
    cdef Py_ssize_t blen = PyBytes_GET_SIZE(block)
    cdef Py_ssize_t max_frame = stream.max_outbound_frame_size
    cdef Py_ssize_t frames = 1 if blen <= max_frame else (blen + max_frame - 1) // max_frame
    cdef Py_ssize_t total = 9 * frames + blen + ((9 + size) if data_frame else 0)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    cdef const unsigned char *src = <const unsigned char *>PyBytes_AS_STRING(block)
    cdef Py_ssize_t pos = 0, n
    cdef int kind = HEADERS, flags
    while True:  # (an empty block is one empty HEADERS frame, as h2 sends it)
        n = blen - pos if blen - pos <= max_frame else max_frame
        flags = (END_STREAM if headers_end and kind == HEADERS else 0) | (END_HEADERS if pos + n == blen else 0)
        p = _frame_head(p, n, kind, flags, sid)
        memcpy(p, src + pos, n)
        p += n
        pos += n
        kind = CONTINUATION
        if pos >= blen:
            break
    if data_frame:
        p = _frame_head(p, size, DATA, END_STREAM if end else 0, sid)
        memcpy(p, PyBytes_AS_STRING(body), size)
        stream.outbound_flow_control_window -= size
        conn.outbound_flow_control_window -= size
    conn._data_to_send += out
    return 2 if headers_end or data_frame or (size == 0 and not end) else 1
