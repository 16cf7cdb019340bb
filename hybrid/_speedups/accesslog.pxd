# Typed declarations of accesslog.pyx: the access line, made in C (called by connection.pyx).

from hybrid._speedups.cycle cimport RequestCycle

cdef int log_access(object conn, RequestCycle cycle, str where) except -1
