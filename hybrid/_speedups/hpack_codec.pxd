cdef struct Buf:  # a growing output buffer (malloc'd; the encoder frees it)
    unsigned char *p
    Py_ssize_t n
    Py_ssize_t cap


cdef class _Table:
    cdef list entries  # the dynamic table, oldest first (index 62 is the last one)
    cdef Py_ssize_t size, maxsize
    cdef bint resized
    cdef Py_ssize_t changes  # (counts every change of the entries: an encoder's repeat needs none since)
    cdef tuple get(self, Py_ssize_t index)
    cdef int add(self, bytes name, bytes value) except -1
    cdef int _shrink(self) except -1
    cdef int set_maxsize(self, Py_ssize_t newmax) except -1


cdef class Encoder:
    cdef _Table header_table
    cdef public list table_size_changes
    cdef list _last  # the last block's fields, (name, value, sensitive) flattened, when encoding it changed nothing
    cdef bytes _last_block
    cdef bint _last_huffman
    cdef Py_ssize_t _last_changes
    cpdef bytes encode(self, headers, huffman=*)
    cdef int _add(self, Buf *b, bytes name, bytes value, bint sensitive, bint huffman) except -1


cdef class Decoder:
    cdef _Table header_table
    cdef public Py_ssize_t max_header_list_size
    cdef public Py_ssize_t max_allowed_table_size
    cdef bytes _last_block  # the last block decoded raw that changed nothing in the table, and its fields
    cdef list _last_headers
    cdef Py_ssize_t _last_changes, _last_limit, _last_allowed
    cdef tuple _literal(self, const unsigned char *p, Py_ssize_t n, Py_ssize_t pos, bint should_index)
    cpdef decode(self, data, raw=*)
