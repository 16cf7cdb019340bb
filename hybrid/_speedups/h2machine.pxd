cdef class Steps:
    cdef list row
    cdef object inp
    cpdef object step(self, object machine)


cdef object new_plain(type cls)
