# The per-step marks as C calls (task.pyx, connection.pyx): every step of app code is marked, so a Python-level
# call of SyncWorker.enter_app / leave_app per mark was paid by every request (monitor.pyx).

cdef int mark_enter(object monitor, int slot, int fd) except -1
cdef int mark_leave(object monitor, int slot) except -1
