# cython: language_level=3
"""RFC 6455 data frames in C, beside wsproto: the common case of a WebSocket message, whole, without Python.

wsproto parses and builds every frame in Python, with a copy at each step (its buffer, a slice, unmasking, the
extension pass, ``bytes()``, the join of partial frames; on the way out ``bytearray(payload)``, ``header +
payload``, ``bytearray(...)`` again). For a 64 KiB echo that was most of the server's CPU per message.

``FrameReader`` parses frames in place in a SocketStream's read buffer. A frame it can deliver by itself is an
unfragmented text or binary message: FIN set, no RSV bit (so not compressed), masked, lengths in their shortest
form, no fragmented message in progress in wsproto, not over ``max_size``, and for text valid UTF-8. Its payload
is unmasked straight from the read buffer into the message's ``bytes`` (the one copy) or decoded to ``str``.
Every other frame is handed to wsproto byte for byte, in order (PASS), so wsproto stays the source of truth for
control frames, fragmentation, permessage-deflate, limits and every error and its close code: a frame starts in
one or the other, and wsproto always gets whole frames' worth of bytes at frame boundaries. A header that breaks
the rules (bad opcode, an unmasked frame, a long length form for a short length, ...) and everything after it
goes to wsproto, which fails the connection with the right code.

``frame_header()`` builds a server frame's header (unmasked), so a message goes out as header + payload with no
copy of the payload (one ``sendmsg``).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from hybrid._speedups.streams cimport SocketStream

# What next() found: NEED (fewer than ``want`` bytes buffered), a whole TEXT or BINARY message in ``payload``, or
# PASS (``payload`` is bytes for wsproto).
cdef enum:
    _NEED = 0
    _TEXT = 1
    _BINARY = 2
    _PASS = 3

NEED = _NEED
TEXT = _TEXT
BINARY = _BINARY
PASS = _PASS


cdef inline void _unmask(const unsigned char* src, unsigned char* dst, Py_ssize_t n,
                         const unsigned char* key) noexcept nogil:
    # A word at a time; the key repeats every 4 bytes, so an 8-byte key word is the key twice.
    cdef unsigned char rolled[8]
    cdef uint64_t word, key8
    cdef uint64_t w4[4]
    cdef Py_ssize_t i
    for i in range(8):
        rolled[i] = key[i & 3]
    memcpy(&key8, rolled, 8)
    i = 0
    while i + 32 <= n:  # four words a turn: the compiler keeps them in vector registers
        memcpy(w4, src + i, 32)
        w4[0] ^= key8
        w4[1] ^= key8
        w4[2] ^= key8
        w4[3] ^= key8
        memcpy(dst + i, w4, 32)
        i += 32
    while i + 8 <= n:
        memcpy(&word, src + i, 8)
        word ^= key8
        memcpy(dst + i, &word, 8)
        i += 8
    while i < n:
        dst[i] = src[i] ^ rolled[i & 7]
        i += 1


cdef class FrameReader:
    """Frames of one connection, read in place in ``stream``'s buffer; see the module docstring."""

    cdef SocketStream _stream
    cdef Py_ssize_t _max_size
    cdef Py_ssize_t _passing       # bytes of the current frame still to hand to wsproto
    cdef bint _in_message          # wsproto holds the start of a fragmented message: its frames are its
    cdef bint _delegating          # a header was invalid: wsproto gets everything from there on
    cdef readonly Py_ssize_t want  # after NEED: the bytes the next frame needs buffered
    cdef readonly object payload   # after TEXT, BINARY or PASS

    def __init__(self, SocketStream stream, Py_ssize_t max_size):
        self._stream = stream
        self._max_size = max_size
        self.want = 1

    @property
    def delegating(self):
        return self._delegating

    def next(self):
        """Look at the buffered bytes: NEED, TEXT, BINARY or PASS (see the module docstring)."""
        cdef bytearray buf = self._stream._rbuf
        cdef Py_ssize_t have = PyByteArray_GET_SIZE(buf), hlen, total, k
        cdef const unsigned char* p = <const unsigned char*>PyByteArray_AS_STRING(buf)
        cdef unsigned char b0, b1, opcode
        cdef uint64_t length
        cdef bint fin, valid
        self.payload = None
        if have == 0:
            self.want = 1
            return _NEED
        if self._delegating or self._passing:
            k = have if self._delegating or self._passing > have else self._passing
            if not self._delegating:
                self._passing -= k
            self.payload = self._stream._take(k)
            return _PASS
        if have < 2:
            self.want = 2
            return _NEED
        b0 = p[0]
        b1 = p[1]
        fin = b0 & 0x80
        opcode = b0 & 0x0F
        length = b1 & 0x7F
        hlen = 6 if b1 & 0x80 else 2
        if length == 126:
            hlen += 2
        elif length == 127:
            hlen += 8
        if have < hlen:
            self.want = hlen
            return _NEED
        if length == 126:
            length = (<uint64_t>p[2] << 8) | p[3]
            valid = length > 125
        elif length == 127:
            length = 0
            for k in range(2, 10):
                length = (length << 8) | p[k]
            valid = length > 0xFFFF and not (length >> 63)
        else:
            valid = True
        valid = valid and length < (<uint64_t>1 << 62)  # (so that header + length fits a Py_ssize_t)
        # wsproto's checks, so that whatever it would refuse reaches it: unknown opcodes, an unmasked client
        # frame, a control frame fragmented or over 125 bytes, a length not in its shortest form.
        valid = valid and b1 & 0x80 and (opcode <= 2 or (8 <= opcode <= 10 and fin and length <= 125))
        if not valid:
            self._delegating = True
            self.payload = self._stream._take(have)
            return _PASS
        if (fin and opcode != 0 and opcode <= 2 and not (b0 & 0x70) and not self._in_message
                and length <= <uint64_t>self._max_size):
            total = hlen + <Py_ssize_t>length
            if have < total:
                self.want = total
                return _NEED
            if self._take_message(p + hlen, <Py_ssize_t>length, p + hlen - 4, opcode == 1):
                self._stream._skip(total)
                return _TEXT if opcode == 1 else _BINARY
            # Invalid UTF-8: wsproto sees the frame and closes with 1007.
        elif opcode <= 2:
            # A data frame for wsproto: a fragment, compressed (RSV1), or over max_size (it closes with 1009).
            # wsproto's message ends with a final continuation; a final text/binary frame inside a message is
            # its protocol error, and the connection fails either way.
            self._in_message = not fin
        self._passing = hlen + <Py_ssize_t>length
        return self.next()

    cdef bint _take_message(self, const unsigned char* src, Py_ssize_t n, const unsigned char* key,
                            bint text) except -1:
        cdef bytes data = PyBytes_FromStringAndSize(NULL, n)
        cdef char* dst = PyBytes_AS_STRING(data)
        with nogil:
            _unmask(src, <unsigned char*>dst, n, key)
        if not text:
            self.payload = data
            return True
        try:
            self.payload = PyUnicode_DecodeUTF8(dst, n, NULL)
        except UnicodeDecodeError:
            return False
        return True


def frame_header(int first, Py_ssize_t n):
    """A server frame's header: ``first`` is FIN | opcode (0x81 text, 0x82 binary), ``n`` the payload length."""
    cdef unsigned char h[10]
    cdef Py_ssize_t hlen, i
    h[0] = <unsigned char>first
    if n <= 125:
        h[1] = <unsigned char>n
        hlen = 2
    elif n <= 0xFFFF:
        h[1] = 126
        h[2] = <unsigned char>(n >> 8)
        h[3] = <unsigned char>n
        hlen = 4
    else:
        h[1] = 127
        for i in range(8):
            h[2 + i] = <unsigned char>((<uint64_t>n) >> (56 - 8 * i))
        hlen = 10
    return PyBytes_FromStringAndSize(<char*>h, hlen)


def encode_frame(int first, bytes payload):
    """Header and payload in one ``bytes`` (for small messages, where one ``send`` beats a two-part ``sendmsg``)."""
    cdef bytes header = frame_header(first, len(payload))
    cdef Py_ssize_t hlen = len(header), n = len(payload)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, hlen + n)
    cdef char* dst = PyBytes_AS_STRING(out)
    memcpy(dst, PyBytes_AS_STRING(header), hlen)
    memcpy(dst + hlen, PyBytes_AS_STRING(payload), n)
    return out
