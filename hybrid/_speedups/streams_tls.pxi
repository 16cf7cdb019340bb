# Included by streams.pyx: what SocketStream._on_readable reads from a TLS socket.

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long request, ...)
    enum: FIONREAD

cdef object EOF_AFTER_DATA = object()


cdef inline bint _queued(int fd):
    """Bytes wait in the socket's receive queue."""
    cdef int n = 0
    return ioctl(fd, FIONREAD, &n) == 0 and n > 0


cdef tuple _tls_recv(object sock, int fd):
    """(bytes, after): the first ``recv``'s errors are raised as they come; ``after`` is an EOF (EOF_AFTER_DATA)
    or an error met behind the bytes, for the stream to act on once they are delivered.

    One recv decrypts one TLS record (16 KiB at most): the records already here are read now, up to RECV_SIZE,
    so that a burst of small records is one batch for the consumer, as one recv(2) is without TLS (h2load puts a
    few requests in each record: one batch a record cost HTTP/2 three times the system calls of h2c). While bytes
    wait in the socket (FIONREAD: one ioctl, where a recv that finds none raises SSLWantReadError)."""
    cdef bytes data = sock.recv(RECV_SIZE)
    after = None
    if not data:
        return data, None
    while PyBytes_GET_SIZE(data) < RECV_SIZE and (sock.pending() or _queued(fd)):
        try:
            more = sock.recv(RECV_SIZE - PyBytes_GET_SIZE(data))
        except WOULD_BLOCK:
            break
        except OSError as exc:
            after = exc
            break
        if not more:
            after = EOF_AFTER_DATA
            break
        data += more
    # RECV_SIZE reached inside a record: what OpenSSL decrypted and holds is taken too (epoll would not tell).
    try:
        while after is None and sock.pending():
            data += sock.recv(sock.pending())
    except WOULD_BLOCK:
        pass
    except OSError as exc:
        after = exc
    return data, after
