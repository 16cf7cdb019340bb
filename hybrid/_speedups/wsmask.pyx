# cython: language_level=3
"""XorMasker: RFC 6455 section 5.3 unmasking in C, for wsproto.

Every frame a client sends is masked: each payload byte XORed with a 4-byte key. wsproto does it in Python (four
``bytearray.translate`` passes over strided copies), which was a quarter of the server's CPU per 64 KiB echoed
message. This class has the same small interface (``XorMasker(key)``, ``process(data) -> bytearray``, the key
position carried from one call to the next) and does it a word at a time. hybrid/asgi/websocket.py installs it as
``wsproto.frame_protocol.XorMaskerSimple``, the name wsproto looks up each time it starts a frame.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcpy


cdef class XorMasker:
    cdef unsigned char _key[4]
    cdef Py_ssize_t _offset

    def __init__(self, masking_key):
        if len(masking_key) != 4:
            raise ValueError("a WebSocket masking key is 4 bytes")
        for i in range(4):
            self._key[i] = masking_key[i]
        self._offset = 0

    def process(self, data):
        cdef const unsigned char[::1] src = data
        cdef Py_ssize_t n = src.shape[0], i = 0
        cdef unsigned char rolled[8]
        cdef uint64_t word, key8
        out = PyByteArray_FromStringAndSize(NULL, n)
        if n == 0:
            return out
        cdef unsigned char* dst = <unsigned char*>PyByteArray_AS_STRING(out)
        for i in range(8):
            rolled[i] = self._key[(self._offset + i) & 3]
        memcpy(&key8, rolled, 8)
        with nogil:
            i = 0
            while i + 8 <= n:
                memcpy(&word, &src[i], 8)
                word ^= key8
                memcpy(&dst[i], &word, 8)
                i += 8
            while i < n:
                dst[i] = src[i] ^ rolled[i & 7]
                i += 1
        self._offset = (self._offset + n) & 3
        return out
