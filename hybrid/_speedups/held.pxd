# Typed declarations of held.pyx: the responses a set's owner holds to the end of its batch.

cdef class HeldBatch:
    cdef list conns  # connections holding a response (Connection.held_out), the first n of it
    cdef list spare  # the other list: a flush swaps them, so a batch allocates nothing
    cdef Py_ssize_t n
    cdef int add(self, conn) except -1
