# Typed declarations of SocketStream (streams.pyx): an accepted socket as an asyncio stream the AsyncPool can
# hand back to a SyncWorker thread (detach) without closing it.

cdef class SocketStream:
    cdef object _sock
    cdef object _loop
    cdef int _fd
    cdef object _readable_cb        # bound methods, made once: add_reader/add_writer are called often
    cdef object _writable_cb
    cdef object _fire_cb            # _fire_data, bound once
    cdef object _data_cb            # set_data_callback's callback, or None (read by coroutines)
    cdef bint _tls                  # the socket is an ssl.SSLSocket (see the module docstring)
    # reading
    cdef bytearray _rbuf            # received, not yet consumed
    cdef Py_ssize_t _read_limit
    cdef Py_ssize_t _read_want      # the waiting reader is woken once this many bytes are buffered
    cdef object _read_waiter        # the Future the one reading coroutine waits on, or None
    cdef list _eof_waiters
    cdef bint _reading              # add_reader is registered
    cdef bint _eof                  # nothing more will arrive: EOF, read error, or closed here
    # writing
    cdef object _wbuf               # deque of chunks: bytes, or memoryviews over bytes we own
    cdef Py_ssize_t _wsize
    cdef Py_ssize_t _high_water
    cdef Py_ssize_t _low_water
    cdef list _drain_waiters
    cdef bint _writing              # add_writer is registered (exactly when _wbuf is not empty)
    # ending
    cdef bint _closing              # close() was called: no more writes
    cdef bint _sock_closed
    cdef bint _detached
    cdef bint _peer_gone
    cdef object _exc                # the OSError that showed the peer was gone

    cpdef Py_ssize_t write(self, data) except -1
    cpdef Py_ssize_t writelines(self, chunks) except -1
    cpdef bytes take(self)
    cdef bytes _take(self, Py_ssize_t n)
    cdef _skip(self, Py_ssize_t n)
    cdef object _fill_waiter(self, Py_ssize_t n)
    cdef int _recv_into_buffer(self) except -1
    cdef _on_eof(self)
    cdef _end_after_data(self, object after)
    cdef object _new_read_waiter(self)
    cdef object _new_drain_waiter(self)
    cdef _resume_reading(self)
    cdef _pause_reading(self)
    cdef _stop_watching(self)
    cdef object _gone(self)
    cdef _check_writable(self)
    cdef Py_ssize_t _send_now(self, object data, bint vector) except -1
    cdef _buffer(self, object chunk, Py_ssize_t offset)
    cdef _consume(self, Py_ssize_t sent)
    cdef _wake_drainers(self, object exc)
    cdef _wake_readers(self, object exc)
    cdef _lost(self, object exc)
    cdef _close_socket(self)
