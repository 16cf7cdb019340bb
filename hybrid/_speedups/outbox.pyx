# cython: language_level=3
"""Outbox: a connection's messages sent from other threads' loops, waiting for the loop that owns it, and their
bytes (hybrid/asgi/crossloop.py: a WebSocket's ``send`` from another loop).

Senders on several threads put, the owner's loop takes; the byte count is what a sender compares with the
connection's high-water mark. Why compiled: ``size += n`` in Python is a read, an add and a write, and a thread
switch between them would lose another thread's update. Here each method runs under the GIL without calling Python
code between its steps (appending to a deque is C), so no other thread runs in between and no lock is needed.
Should a switch still come (an allocation that starts a collection running a finalizer), the flag's order keeps
the hand-over right: put appends before it tests ``announced``, the owner clears ``announced`` before it takes.
"""

from collections import deque


cdef class Outbox:
    cdef object items            # deque of (item, size), in the order they were put
    cdef readonly Py_ssize_t size  # bytes put and not yet taken
    cdef bint announced          # the owner's loop was told and has not yet begun taking

    def __cinit__(self):
        self.items = deque()

    def __len__(self):
        return len(self.items)

    cpdef bint put(self, object item, Py_ssize_t size) except -1:
        """From any thread: queue ``item`` of ``size`` bytes. True when the caller must tell the owner's loop
        (nothing told it since it last began taking)."""
        self.items.append((item, size))
        self.size += size
        if self.announced:
            return False
        self.announced = True
        return True

    cpdef begin(self):
        """The owner's loop, before it takes: puts from now on announce themselves again."""
        self.announced = False

    cpdef object take(self):
        """The owner's loop: the oldest item, or None when there is none."""
        cdef tuple entry
        if not self.items:
            return None
        entry = self.items.popleft()
        self.size -= <Py_ssize_t>entry[1]
        return entry[0]

    cpdef clear(self):
        """The owner's loop: drop what is queued (the connection is closed: nothing more can go out)."""
        while self.take() is not None:
            pass
