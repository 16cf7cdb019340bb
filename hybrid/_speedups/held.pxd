# Typed declarations of held.pyx: the responses a set's owner holds to the end of its batch.

cdef class HeldBatch:
    cdef list conns  # connections holding a response (Connection.held_out), the first n of it
    cdef list spare  # the other list: a flush swaps them, so a batch allocates nothing
    cdef Py_ssize_t n
    cdef int add(self, conn) except -1


cdef class LoopHeld:
    cdef object loop, _flush
    cdef list targets  # the HeldBatch(es) held in since the last flush (one, unless the thread changed sets)
    cdef bint scheduled  # a flush is scheduled on the loop
    cdef int hold(self, HeldBatch batch, conn) except -1


cdef object send_resumed(conn, data)
cdef bint send_held_first(conn) except -1
