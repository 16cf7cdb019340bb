cdef class Steps:
    cdef list row
    cdef object inp
    cdef object step(self, object machine)
