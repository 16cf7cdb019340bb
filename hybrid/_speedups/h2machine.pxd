cdef class Steps:
    cdef list row
    cdef object inp
    cdef int run(self, object machine) except -1
    cpdef object step(self, object machine)


cdef object new_plain(type cls)
