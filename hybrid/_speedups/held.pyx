# cython: language_level=3
"""The responses a set's owner holds to the end of its batch of ready connections (``Connection.send_last``;
why, and what may be held: hybrid/held_write.py). One per ConnectionSet (``ConnectionSet.held``).

Compiled, and two lists that take turns instead of one that grows and empties: appending to an empty list and
emptying it again allocated and freed its items for every batch (glibc's realloc, 0.5k instructions per request
with one connection). ``flush`` swaps the lists before it writes, so a thread that flushes the same set at once
(the one a takeover left stuck in a handler, and the spare) never walks entries the other is refilling.
"""

from hybrid._speedups.connection cimport Connection

from hybrid._speedups.cycle import ClientDisconnected


cdef class HeldBatch:
    def __cinit__(self):
        self.conns = []
        self.spare = []
        self.n = 0

    def __bool__(self):
        return self.n > 0

    def __len__(self):
        return self.n

    cdef int add(self, conn) except -1:
        if self.n < len(self.conns):
            self.conns[self.n] = conn
        else:
            self.conns.append(conn)
        self.n += 1
        return 0

    def flush(self):
        """Write each held response in one ``send``; the rest of one the kernel did not take is written as the
        client reads (hybrid/held_write.py)."""
        cdef list conns = self.conns
        cdef Py_ssize_t i, n = self.n
        cdef Connection conn
        self.conns = self.spare if self.spare is not None else []
        self.spare = None
        self.n = 0
        for i in range(n):
            conn = conns[i]
            conns[i] = None
            data = conn.held_out
            conn.held_out = None
            if data is None or conn.sock is None:
                continue
            try:
                rest = conn.send_now(data)
            except ClientDisconnected:
                if conn.cycle is None:
                    conn.close()
                continue
            if rest is not None:
                from hybrid.held_write import write_rest
                write_rest(conn, rest)
        self.spare = conns
