# cython: language_level=3
"""HPACK (RFC 7541) in C: drop-in ``Encoder`` and ``Decoder`` for the ones h2 takes from the hpack library.

hpack is pure Python; it was about a fifth of h2's CPU per request (integer and Huffman coding a bit or nibble at a
time, a debug log call per field), as much as h2's header validation, more than hyperframe's frames. These classes keep
hpack's interface and behaviour exactly (tests/test_hpack_codec.py checks them against hpack with Hypothesis):
the same bytes out (Huffman always, indexing as hpack decides it), the same header tuples in
(``HeaderTuple`` / ``NeverIndexedHeaderTuple``), the same exceptions (hpack's own classes, so h2 maps them to
PROTOCOL_ERROR / COMPRESSION_ERROR as before) at the same points, and the same bounds: integers of at most 6
octets, ``max_header_list_size`` counted per field as decoded (HPACK bombs), table size updates only at the start
of a block and within ``max_allowed_table_size``. The tables (static table, Huffman codes, the decoding state
machine) are read from hpack at import, so both always agree. hybrid/h2/session.py installs them on each
H2Connection (``encoder`` / ``decoder`` attributes).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_SET_ITEM
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from hpack.exceptions import HPACKDecodingError, InvalidTableIndex, InvalidTableSizeError, OversizedHeaderListError
from hpack.hpack import _dict_to_iterable, _to_bytes
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import HUFFMAN_COMPLETE, HUFFMAN_EMIT_SYMBOL, HUFFMAN_FAIL, HUFFMAN_TABLE
from hpack.struct import HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

cdef tuple STATIC = tuple(HeaderTable.STATIC_TABLE)
cdef Py_ssize_t STATIC_LEN = len(STATIC)
cdef dict STATIC_MAPPING = dict(HeaderTable.STATIC_TABLE_MAPPING)  # name -> (first index, {value: index})
cdef object _tuple_new = tuple.__new__

cdef extern from "Python.h":
    object PyType_GenericAlloc(PyTypeObject *cls, Py_ssize_t nitems)


# (hpack's header classes add no field to the tuple: a subclass's instance is laid out as a tuple's)
cdef bint _PLAIN_TUPLES = (HeaderTuple.__basicsize__ == NeverIndexedHeaderTuple.__basicsize__ == tuple.__basicsize__
                           and issubclass(NeverIndexedHeaderTuple, HeaderTuple) and issubclass(HeaderTuple, tuple))


cdef inline object _header(cls, bytes name, bytes value):
    """``cls(name, value)`` for hpack's HeaderTuple classes (tuple subclasses that add no field): allocated as
    ``tuple.__new__`` allocates a subclass, without its Python call and the tuple it copies from (~600
    instructions a field)."""
    if not _PLAIN_TUPLES:
        return _tuple_new(cls, (name, value))
    header = PyType_GenericAlloc(<PyTypeObject *>cls, 2)
    Py_INCREF(name)
    PyTuple_SET_ITEM(header, 0, name)
    Py_INCREF(value)
    PyTuple_SET_ITEM(header, 1, value)
    return header

# The Huffman code of each octet, and hpack's decoding state machine (256 states x 16 nibbles).
cdef uint32_t CODES[257]
cdef uint8_t CODE_LENS[257]
cdef uint8_t H_STATE[4096]
cdef uint8_t H_FLAGS[4096]
cdef uint8_t H_SYM[4096]
cdef int _i
for _i in range(257):
    CODES[_i] = REQUEST_CODES[_i]
    CODE_LENS[_i] = REQUEST_CODES_LENGTH[_i]
for _i in range(4096):
    H_STATE[_i], H_FLAGS[_i], H_SYM[_i] = HUFFMAN_TABLE[_i]
cdef uint8_t F_COMPLETE = HUFFMAN_COMPLETE, F_EMIT = HUFFMAN_EMIT_SYMBOL, F_FAIL = HUFFMAN_FAIL


cdef class _Table:
    """The dynamic table (RFC 7541 section 2.3.2) behind the static one, with hpack's HeaderTable rules."""

    def __cinit__(self):
        self.entries = []
        self.size = 0
        self.maxsize = 4096
        self.resized = False
        self.changes = 0

    cdef tuple get(self, Py_ssize_t index):
        cdef Py_ssize_t i = index - 1, n
        if i >= 0:
            if i < STATIC_LEN:
                return <tuple>STATIC[i]
            i -= STATIC_LEN
            n = len(self.entries)
            if i < n:
                return <tuple>self.entries[n - 1 - i]
        raise InvalidTableIndex("Invalid table index %d" % index)

    cdef int add(self, bytes name, bytes value) except -1:
        cdef Py_ssize_t size = 32 + len(name) + len(value)
        self.changes += 1
        if size > self.maxsize:  # (larger than the whole table: it empties it, RFC 7541 section 4.4)
            self.entries.clear()
            self.size = 0
        else:
            self.entries.append((name, value))
            self.size += size
            self._shrink()
        return 0

    cdef int _shrink(self) except -1:
        cdef Py_ssize_t k = 0, size = self.size
        cdef tuple entry
        while size > self.maxsize:
            entry = <tuple>self.entries[k]
            size -= 32 + len(<bytes>entry[0]) + len(<bytes>entry[1])
            k += 1
        if k:
            del self.entries[:k]
        self.size = size
        return 0

    cdef int set_maxsize(self, Py_ssize_t newmax) except -1:
        cdef Py_ssize_t old = self.maxsize
        self.changes += 1
        self.maxsize = newmax
        self.resized = newmax != old
        if newmax <= 0:
            self.entries.clear()
            self.size = 0
        elif old > newmax:
            self._shrink()
        return 0


# -- output buffer -----------------------------------------------------------------------------------------

cdef int _reserve(Buf *b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = b.cap
    cdef unsigned char *p
    if b.n + more <= cap:
        return 0
    while cap < b.n + more:
        cap = cap * 2 if cap else 256
    p = <unsigned char *>realloc(b.p, cap)
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef int _put_int(Buf *b, uint64_t value, int prefix_bits, unsigned char flags) except -1:
    """RFC 7541 section 5.1, the first octet's high bits set to ``flags``."""
    cdef uint64_t max_number = (1 << prefix_bits) - 1
    _reserve(b, 11)
    if value < max_number:
        b.p[b.n] = <unsigned char>value | flags
        b.n += 1
        return 0
    b.p[b.n] = <unsigned char>max_number | flags
    b.n += 1
    value -= max_number
    while value >= 128:
        b.p[b.n] = <unsigned char>((value & 127) + 128)
        b.n += 1
        value >>= 7
    b.p[b.n] = <unsigned char>value
    b.n += 1
    return 0


cdef int _put_string(Buf *b, bytes s, bint huffman) except -1:
    """RFC 7541 section 5.2: the length, then the octets (Huffman-coded, as hpack always does when asked)."""
    cdef const unsigned char *src = <const unsigned char *>PyBytes_AS_STRING(s)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(s), i, bits = 0
    cdef uint64_t acc = 0
    cdef int have = 0, length
    if not huffman:
        _put_int(b, n, 7, 0)
        _reserve(b, n)
        memcpy(b.p + b.n, src, n)
        b.n += n
        return 0
    for i in range(n):
        bits += CODE_LENS[src[i]]
    _put_int(b, (bits + 7) >> 3, 7, 0x80)
    _reserve(b, (bits + 7) >> 3)
    for i in range(n):
        length = CODE_LENS[src[i]]
        acc = (acc << length) | CODES[src[i]]
        have += length
        while have >= 8:
            have -= 8
            b.p[b.n] = <unsigned char>(acc >> have)
            b.n += 1
    if have:  # pad with the EOS code's leading ones (section 5.2)
        b.p[b.n] = <unsigned char>((acc << (8 - have)) | ((1 << (8 - have)) - 1))
        b.n += 1
    return 0


cdef class Encoder:
    """hpack.Encoder's interface: ``encode(headers, huffman=True) -> bytes``, ``header_table_size``."""

    def __cinit__(self):
        self.header_table = _Table()
        self.table_size_changes = []

    @property
    def header_table_size(self):
        return self.header_table.maxsize

    @header_table_size.setter
    def header_table_size(self, value):
        self.header_table.set_maxsize(int(value))
        if self.header_table.resized:
            self.table_size_changes.append(value)

    cpdef bytes encode(self, headers, huffman=True):
        """hpack.Encoder.encode. A block that changed nothing (every field indexed, or a never-indexed literal) is
        kept with its fields: the same fields again, with the table as it was, are the same bytes (a
        connection's responses repeat their headers: ~5,000 instructions a response, not encoded again)."""
        cdef Buf b
        cdef bint sensitive, huff = bool(huffman), same
        cdef _Table table = self.header_table
        cdef list last = self._last, key
        cdef Py_ssize_t i, n, changes
        if (last is not None and type(headers) is list and not table.resized and table.changes == self._last_changes
                and huff == self._last_huffman and 3 * PyList_GET_SIZE(headers) == PyList_GET_SIZE(last)):
            same = True
            for i in range(PyList_GET_SIZE(headers)):
                header = <object>PyList_GET_ITEM(headers, i)
                if not (isinstance(header, tuple) and PyTuple_GET_SIZE(header) == 2):  # (only pairs are kept)
                    same = False
                    break
                name = <object>PyTuple_GET_ITEM(header, 0)
                value = <object>PyTuple_GET_ITEM(header, 1)
                # (a plain tuple's type first: isinstance() of a tuple against HeaderTuple looks up __class__)
                sensitive = type(header) is not tuple and isinstance(header, HeaderTuple) and not header.indexable
                if not (type(name) is bytes and type(value) is bytes and <bytes>name == <bytes>last[3 * i]
                        and <bytes>value == <bytes>last[3 * i + 1] and sensitive == <bint>last[3 * i + 2]):
                    same = False
                    break
            if same:
                return self._last_block
        self._last = None
        b.p = NULL
        b.n = b.cap = 0
        try:
            changes = table.changes
            key = [] if type(headers) is list and not table.resized else None
            if table.resized:  # (section 6.3: the size updates go first)
                for size in self.table_size_changes:
                    if size < 0:
                        raise ValueError(f"Can only encode positive integers, got {size}")
                    _put_int(&b, size, 5, 0x20)
                self.table_size_changes = []
                table.resized = False
            items = _dict_to_iterable(headers) if isinstance(headers, dict) else headers
            for header in items:
                if isinstance(header, HeaderTuple):
                    sensitive = not header.indexable
                elif len(header) > 2:
                    sensitive = bool(header[2])
                    key = None  # (a triple: not kept)
                else:
                    sensitive = False
                name, value = header[0], header[1]  # (bytes as they are: no Python call for each, as _to_bytes)
                if key is not None:
                    if type(name) is bytes and type(value) is bytes and isinstance(header, tuple):
                        key += (name, value, sensitive)
                    else:
                        key = None
                self._add(&b, name if type(name) is bytes else _to_bytes(name),
                          value if type(value) is bytes else _to_bytes(value), sensitive, huff)
            block = PyBytes_FromStringAndSize(<char *>b.p, b.n)
            if key is not None and table.changes == changes:  # (nothing added or evicted: repeatable)
                self._last, self._last_block, self._last_huffman, self._last_changes = key, block, huff, changes
            return block
        finally:
            free(b.p)

    cdef int _add(self, Buf *b, bytes name, bytes value, bint sensitive, bint huffman) except -1:
        """One field, as hpack.Encoder.add: indexed when name and value are in a table, else a literal with
        the name's index when the name is, else a literal name; added to the dynamic table unless sensitive."""
        cdef Py_ssize_t partial = 0, i, n
        cdef _Table table = self.header_table
        cdef tuple entry
        found = STATIC_MAPPING.get(name)
        if found is not None:
            index = (<dict>(<tuple>found)[1]).get(value)
            if index is not None:
                return _put_int(b, index, 7, 0x80)
            partial = (<tuple>found)[0]
        n = len(table.entries)
        for i in range(n):
            entry = <tuple>table.entries[n - 1 - i]
            if <bytes>entry[0] == name:
                if <bytes>entry[1] == value:
                    return _put_int(b, i + STATIC_LEN + 1, 7, 0x80)
                if not partial:
                    partial = i + STATIC_LEN + 1
        if partial:
            if sensitive:
                _put_int(b, partial, 4, 0x10)
            else:
                _put_int(b, partial, 6, 0x40)
        else:
            _reserve(b, 1)
            b.p[b.n] = 0x10 if sensitive else 0x40
            b.n += 1
            _put_string(b, name, huffman)
        _put_string(b, value, huffman)
        if not sensitive:
            table.add(name, value)
        return 0


# -- decoding ----------------------------------------------------------------------------------------------

cdef Py_ssize_t _get_int(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos, int prefix_bits,
                         uint64_t *out) except -1:
    """RFC 7541 section 5.1 at ``p[pos]``: stores the value, returns the octets taken. As hpack: at most 6
    octets (a longer one is a decoding error, section 5.1's "implementation limits")."""
    cdef uint64_t max_number = (1 << prefix_bits) - 1, number, byte
    cdef Py_ssize_t index = 1
    cdef int shift = 0
    if pos >= n:
        raise HPACKDecodingError("Unable to decode HPACK integer representation: no octets left")
    number = p[pos] & max_number
    if number == max_number:
        while True:
            if pos + index >= n:
                raise HPACKDecodingError("Unable to decode HPACK integer representation: truncated")
            byte = p[pos + index]
            index += 1
            if byte >= 128:
                number += (byte - 128) << shift
            else:
                number += byte << shift
                break
            shift += 7
            if index > 5:
                raise HPACKDecodingError("Variable integer representation is too long")
    out[0] = number
    return index


cdef bytes _get_string(const unsigned char *p, Py_ssize_t n, Py_ssize_t *pos):
    """RFC 7541 section 5.2 at ``p[pos[0]]`` (a name or a value: length, then Huffman or raw octets); moves
    ``pos`` past it."""
    cdef uint64_t length
    cdef Py_ssize_t q = pos[0]
    cdef Py_ssize_t taken = _get_int(p, n, q, 7, &length)
    if length > <uint64_t>(n - q - taken):
        raise HPACKDecodingError("Truncated header block")
    if p[q] & 0x80:
        out = _huffman_decode(p + q + taken, <Py_ssize_t>length)
    else:
        out = PyBytes_FromStringAndSize(<char *>p + q + taken, <Py_ssize_t>length)
    pos[0] = q + taken + <Py_ssize_t>length
    return out


cdef bytes _huffman_decode(const unsigned char *src, Py_ssize_t n):
    cdef unsigned char stack[512]
    cdef unsigned char *out = stack
    cdef Py_ssize_t i, k = 0
    cdef unsigned int state = 0, idx
    cdef uint8_t flags = 0
    if n == 0:
        return b""
    if 2 * n > 512:  # (one symbol at most per nibble)
        out = <unsigned char *>malloc(2 * n)
        if out == NULL:
            raise MemoryError()
    try:
        for i in range(n):
            idx = state * 16 + (src[i] >> 4)
            state, flags = H_STATE[idx], H_FLAGS[idx]
            if flags & F_FAIL:
                raise HPACKDecodingError("Invalid Huffman string")
            if flags & F_EMIT:
                out[k] = H_SYM[idx]
                k += 1
            idx = state * 16 + (src[i] & 0x0F)
            state, flags = H_STATE[idx], H_FLAGS[idx]
            if flags & F_FAIL:
                raise HPACKDecodingError("Invalid Huffman string")
            if flags & F_EMIT:
                out[k] = H_SYM[idx]
                k += 1
        if not flags & F_COMPLETE:
            raise HPACKDecodingError("Incomplete Huffman string")
        return PyBytes_FromStringAndSize(<char *>out, k)
    finally:
        if out != stack:
            free(out)


cdef class Decoder:
    """hpack.Decoder's interface: ``decode(data, raw=False)``, ``max_header_list_size``,
    ``max_allowed_table_size``, ``header_table_size``."""

    def __cinit__(self, Py_ssize_t max_header_list_size=65536):
        self.header_table = _Table()
        self.max_header_list_size = max_header_list_size
        self.max_allowed_table_size = self.header_table.maxsize

    @property
    def header_table_size(self):
        return self.header_table.maxsize

    @header_table_size.setter
    def header_table_size(self, value):
        self.header_table.set_maxsize(int(value))

    cpdef decode(self, data, raw=False):  # (cpdef: h2read calls it in C, no keyword call per request)
        """hpack.Decoder.decode. A block decoded raw that changed nothing in the table (every field indexed or
        a literal not indexed) is kept with its fields: the same bytes again, with the table and the bounds as
        they were, are the same fields (a client's requests repeat their header blocks), in a new list."""
        cdef bytes block = data if type(data) is bytes else bytes(data)
        cdef _Table table = self.header_table
        if (raw and self._last_block is not None and table.changes == self._last_changes
                and self.max_header_list_size == self._last_limit
                and self.max_allowed_table_size == self._last_allowed and block == self._last_block):
            return list(self._last_headers)
        self._last_block = None
        cdef Py_ssize_t changes = table.changes
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(block)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(block), pos = 0, inflated = 0, taken
        cdef unsigned char c
        cdef uint64_t number
        cdef list headers = []
        cdef object header
        cdef object cls
        while pos < n:
            c = p[pos]
            if c & 0x80:  # indexed field (section 6.1)
                taken = _get_int(p, n, pos, 7, &number)
                entry = self.header_table.get(<Py_ssize_t>number)
                header = _header(HeaderTuple, <bytes>(<tuple>entry)[0], <bytes>(<tuple>entry)[1])
            elif c & 0x40:  # literal, added to the table (6.2.1)
                header, taken = self._literal(p, n, pos, True)
            elif c & 0x20:  # dynamic table size update (6.3): only before the first field
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                taken = _get_int(p, n, pos, 5, &number)
                if <long long>number > self.max_allowed_table_size:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                self.header_table.set_maxsize(<Py_ssize_t>number)
                pos += taken
                continue
            else:  # literal, not indexed (6.2.2) or never indexed (6.2.3)
                header, taken = self._literal(p, n, pos, False)
            headers.append(header)
            # (<tuple>: a HeaderTuple's generic item access is CPython's slot wrapper, ~750 instructions a call)
            inflated += 32 + len(<bytes>(<tuple>header)[0]) + len(<bytes>(<tuple>header)[1])
            if inflated > self.max_header_list_size:  # (counted as decoded: an HPACK bomb stops here)
                raise OversizedHeaderListError(
                    f"A header list larger than {self.max_header_list_size} has been received")
            pos += taken
        if self.header_table.maxsize > self.max_allowed_table_size:
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        if raw:
            if table.changes == changes:  # (nothing added, evicted or resized: repeatable)
                self._last_block, self._last_headers, self._last_changes = block, headers, changes
                self._last_limit, self._last_allowed = self.max_header_list_size, self.max_allowed_table_size
                return list(headers)
            return headers
        try:
            return [_tuple_new(type(h), ((<bytes>(<tuple>h)[0]).decode("utf-8"),
                                         (<bytes>(<tuple>h)[1]).decode("utf-8"))) for h in headers]
        except UnicodeDecodeError as err:
            raise HPACKDecodingError("Unable to decode headers as UTF-8") from err

    cdef tuple _literal(self, const unsigned char *p, Py_ssize_t n, Py_ssize_t pos, bint should_index):
        """A literal field at ``p[pos]``: (the header tuple, octets taken)."""
        cdef unsigned char c = p[pos]
        cdef uint64_t number
        cdef Py_ssize_t q
        cdef bint never = False
        cdef bytes name, value
        cdef Py_ssize_t indexed_name = (c & 0x3F) if should_index else (c & 0x0F)
        if not should_index:
            never = (c & 0x10) != 0
        if indexed_name:
            q = pos + _get_int(p, n, pos, 6 if should_index else 4, &number)
            name = <bytes>(self.header_table.get(<Py_ssize_t>number)[0])
        else:
            q = pos + 1
            name = _get_string(p, n, &q)
        value = _get_string(p, n, &q)
        header = _header(NeverIndexedHeaderTuple if never else HeaderTuple, name, value)
        if should_index:
            self.header_table.add(name, value)
        return header, q - pos
