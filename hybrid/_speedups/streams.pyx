# cython: language_level=3
"""SocketStream: an accepted, non-blocking socket as an asyncio stream, for the AsyncPool.

A SyncWorker hands the pool a connection whose response will stream (or become a WebSocket), together with the
bytes it already read past the request head. When a streamed response ends and the connection is keep-alive, the
socket goes back to a worker thread. ``loop.connect_accepted_socket()`` cannot do that: a uvloop transport owns its
fd and closes it. So this is built on ``loop.add_reader``/``add_writer`` and non-blocking ``recv``/``send``, and
``detach()`` stops watching and returns the socket open, with the bytes read but not consumed.

Ownership: the stream owns the socket from construction until ``close()`` or ``abort()`` (which close it) or
``detach()`` (which gives it back, open). After ``detach()`` the stream never touches the socket again: a later
``close()`` or ``abort()`` is a no-op. Everything runs on the loop's thread, construction included (uvloop's
callbacks and futures are not thread-safe).

Reading is eager: the reader is registered from the start, so a client that goes away is noticed while the app
only writes (``wait_eof()``). It pauses while more than ``read_limit`` bytes wait unconsumed (backpressure toward
the client); EOF is not seen while paused, but a write to a reset connection still fails.

EOF is not the peer being gone: a client may half-close and still read the response, so after EOF writes go on.
An error on ``recv``/``send`` (ECONNRESET, EPIPE, ...) is: ``peer_gone`` becomes True, unsent output is dropped,
writers get ``StreamClosed`` and readers see EOF after what is buffered.

TLS: the socket may be a non-blocking ``ssl.SSLSocket`` (a worker's TLSConnection hands over its session). Then
``recv``/``send`` raise ``SSLWantReadError``/``SSLWantWriteError`` for "not now", decrypted bytes OpenSSL holds are
not seen by epoll (``pending()`` is read at once), there is no ``sendmsg`` nor raw ``send(2)`` (chunks are
joined), and a write that got WANT_WRITE must be retried with at least the same bytes: the retry sends the
buffered chunks joined from the same first byte.
"""

import asyncio
import ssl
from collections import deque
from itertools import islice

from hybrid.tls_info import send_close_notify

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport strerror
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_GET_SIZE

cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT

# One recv per readiness callback, like the SyncWorker; one sendmsg carries at most IOV_MAX chunks (Linux, BSD).
# RECV_SIZE takes a 64 KiB WebSocket message and its header in one call, and stays under glibc's 128 KiB mmap
# threshold (the read buffer grows by it before each recv and shrinks back after). A reader waiting for the rest
# of what it asked (a frame) gets a recv of just that many, up to RECV_MAX: growing a buffer that already holds
# 64 KiB by RECV_SIZE for the last 8 bytes of a frame moved the 64 KiB. An empty buffer gets at least RECV_SIZE.
cdef Py_ssize_t RECV_SIZE = 98304
cdef Py_ssize_t RECV_MAX = 1048576
cdef Py_ssize_t IOV_MAX = 1024
cdef tuple WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

include "streams_tls.pxi"


class StreamClosed(ConnectionError):
    """The stream cannot carry more output: the peer went away, or it was closed, aborted or detached here."""


cdef object _byte_view(object data):
    # A flat byte view, so len() counts bytes. It must not outlive write(): the caller may resize its bytearray.
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        return view
    raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")


cdef _wake(list waiters, object exc):
    for waiter in waiters:
        if not waiter.done():  # done: its coroutine was cancelled
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)


cdef class SocketStream:
    """Stream over ``sock`` (accepted, non-blocking) on ``loop``; ``initial`` bytes are read before the socket's."""

    def __cinit__(self, *args, **kwargs):
        self._rbuf = bytearray()
        self._wbuf = deque()
        self._eof_waiters = []
        self._drain_waiters = []

    def __init__(self, sock, loop, bytes initial=b"", Py_ssize_t high_water=65536, Py_ssize_t read_limit=262144):
        if sock.gettimeout() != 0.0:
            raise ValueError("SocketStream needs a non-blocking socket")
        if high_water < 0 or read_limit <= 0:
            raise ValueError("high_water must be >= 0 and read_limit > 0")
        self._sock = sock
        self._loop = loop
        self._fd = sock.fileno()
        self._readable_cb = self._on_readable
        self._writable_cb = self._on_writable
        self._fire_cb = self._fire_data
        if initial:
            self._rbuf += initial
        self._read_limit = read_limit
        self._high_water = high_water
        self._low_water = high_water // 4
        self._tls = isinstance(sock, ssl.SSLSocket)
        if len(self._rbuf) <= read_limit:
            self._resume_reading()
        if self._tls and sock.pending():  # already decrypted: epoll will not say so
            loop.call_soon(self._readable_cb)

    # -- reading -------------------------------------------------------------------------------------------

    def _on_readable(self):
        if not self._reading:
            return  # removed earlier in this loop iteration
        after = None  # (TLS: an EOF or an error met behind the bytes read, handled once they are delivered)
        if not self._tls:
            if not self._recv_into_buffer():
                return
        else:
            try:
                data, after = _tls_recv(self._sock, self._fd)
            except WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(exc)
                return
            if not data:
                self._on_eof()
                return
            self._rbuf += data
        if self._data_cb is not None:
            self._data_cb()
            if PyByteArray_GET_SIZE(self._rbuf) > self._read_limit:
                self._pause_reading()  # (the consumer stopped taking: backpressure, as below)
            if after is not None:
                self._end_after_data(after)
            return
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            # It may need more than read_limit (readexactly, fill): reading goes on until it has what it asked.
            if PyByteArray_GET_SIZE(self._rbuf) >= self._read_want:
                self._read_waiter = None
                waiter.set_result(None)
        elif PyByteArray_GET_SIZE(self._rbuf) > self._read_limit:
            self._pause_reading()
        if after is not None:
            self._end_after_data(after)

    cdef _end_after_data(self, object after):
        # The peer's close (or an error) read right behind bytes now buffered: readers get the bytes, then EOF.
        if after is EOF_AFTER_DATA:
            self._on_eof()
        else:
            self._lost(after)

    def set_data_callback(self, cb):
        """Read by callback instead of by a coroutine: ``cb()`` runs on the loop whenever bytes arrive, and once
        EOF is seen or the peer is lost, until ``cb`` is None again (``take()`` gets the bytes). Bytes already
        buffered, or an EOF already seen, call it soon. Why: the pool's streams wait in ``receive()`` for a
        disconnect, and a reading task per stream cost a Task and two coroutine frames each."""
        if cb is not None and self._detached:
            raise StreamClosed("the stream was detached")
        self._data_cb = cb
        if cb is not None:
            self._resume_reading()
            if self._rbuf or self._eof:
                self._loop.call_soon(self._fire_cb)

    def _fire_data(self):
        if self._data_cb is not None:
            self._data_cb()

    cpdef bytes take(self):
        """Every buffered byte (b"" when there are none), consumed."""
        return self._take(len(self._rbuf)) if self._rbuf else b""

    cdef _on_eof(self):
        self._eof = True
        self._pause_reading()
        self._wake_readers(None)

    cdef int _recv_into_buffer(self) except -1:
        # recv(2) straight into the read buffer's tail: no bytes object per read, no second copy. 1 when bytes
        # came; 0 when none did (EAGAIN, or EOF and a lost peer, both handled here).
        cdef Py_ssize_t have = PyByteArray_GET_SIZE(self._rbuf), size = RECV_SIZE
        cdef ssize_t r
        cdef int err = 0
        if self._read_waiter is not None and self._read_want > have:
            size = min(self._read_want - have, RECV_MAX) if have else max(size, min(self._read_want, RECV_MAX))
        PyByteArray_Resize(self._rbuf, have + size)
        while True:
            r = recv(self._fd, PyByteArray_AS_STRING(self._rbuf) + have, size, MSG_DONTWAIT)
            if r >= 0:
                break
            err = errno
            if err != EINTR:
                break
        PyByteArray_Resize(self._rbuf, have + (r if r > 0 else 0))
        if r > 0:
            return 1
        if r == 0:
            self._on_eof()
        elif err != EAGAIN:
            self._lost(OSError(err, strerror(err)))
        return 0

    cdef _resume_reading(self):
        if not self._reading and not self._eof and not self._detached:
            self._loop.add_reader(self._fd, self._readable_cb)
            self._reading = True

    cdef _pause_reading(self):
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    cdef object _new_read_waiter(self):
        return self._fill_waiter(1)

    cdef object _fill_waiter(self, Py_ssize_t n):
        # A future set once at least n bytes are buffered (or at EOF, or when the stream is lost or closed).
        if self._detached:
            raise StreamClosed("the stream was detached")
        if self._read_waiter is not None and not self._read_waiter.done():  # done: its reader was cancelled
            raise RuntimeError("another coroutine is already waiting for data on this stream")
        self._resume_reading()
        self._read_want = n
        self._read_waiter = self._loop.create_future()
        return self._read_waiter

    cdef bytes _take(self, Py_ssize_t n):
        cdef bytes data
        if n >= len(self._rbuf):
            data = bytes(self._rbuf)
            self._rbuf = bytearray()
            if not self._reading:
                self._resume_reading()
        else:
            data = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self._rbuf), n)
            self._skip(n)
        return data

    cdef _skip(self, Py_ssize_t n):
        # Drop the first n buffered bytes (a compiled parser read them in place). CPython deletes a bytearray's
        # head by moving its start: amortized O(1) per byte, no offset needed.
        del self._rbuf[:n]
        if not self._reading and len(self._rbuf) <= self._read_limit:
            self._resume_reading()

    async def read(self, Py_ssize_t n=-1):
        """Up to ``n`` bytes (``n=-1``: all that is buffered), at least one; ``b""`` at EOF."""
        if n == 0:
            return b""
        while not self._rbuf:
            if self._eof:
                return b""
            await self._new_read_waiter()
        return self._take(len(self._rbuf) if n < 0 else n)

    async def readexactly(self, Py_ssize_t n):
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` (with what there was) at EOF."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        while len(self._rbuf) < n:
            if self._eof:
                partial = self._take(len(self._rbuf))
                raise asyncio.IncompleteReadError(partial, n)
            await self._fill_waiter(n)
        return self._take(n) if n else b""

    async def fill(self, Py_ssize_t n):
        """Wait until at least ``n`` bytes are buffered, consuming nothing; returns how many are buffered, fewer
        than ``n`` only at EOF. The wait wakes once, when they are all there (a large frame costs one wake-up)."""
        while len(self._rbuf) < n and not self._eof:
            await self._fill_waiter(n)
        return len(self._rbuf)

    async def readuntil(self, bytes separator=b"\n", Py_ssize_t limit=65536):
        """Bytes up to and including ``separator``, as ``asyncio.StreamReader.readuntil`` does.

        ``asyncio.LimitOverrunError`` when more than ``limit`` bytes come before the separator (the data stays
        buffered); ``asyncio.IncompleteReadError`` at EOF (the buffered bytes are its ``partial``).
        """
        cdef Py_ssize_t seplen = len(separator) if separator is not None else 0
        cdef Py_ssize_t offset = 0, found = -1
        if seplen == 0:
            raise ValueError("Separator should be at least one-byte string")
        while True:
            if len(self._rbuf) - offset >= seplen:
                found = self._rbuf.find(separator, offset)
                if found >= 0:
                    break
                # Resume the search where the separator could still start.
                offset = len(self._rbuf) + 1 - seplen
                if offset > limit:
                    raise asyncio.LimitOverrunError("Separator is not found, and chunk exceed the limit", offset)
            if self._eof:
                raise asyncio.IncompleteReadError(self._take(len(self._rbuf)), None)
            await self._new_read_waiter()
        if found > limit:
            raise asyncio.LimitOverrunError("Separator is found, but chunk is longer than limit", found)
        return self._take(found + seplen)

    def at_eof(self):
        """EOF was seen (or the stream closed) and every buffered byte was consumed."""
        return self._eof and not self._rbuf

    def buffered(self):
        """Bytes received but not consumed yet."""
        return len(self._rbuf)

    async def wait_eof(self):
        """Return once nothing more can arrive: the peer closed or reset, or the stream was closed here.

        Buffered bytes do not delay it (it is how the pool turns a disconnect into ``http.disconnect``).
        """
        if self._eof:
            return
        if self._detached:
            raise StreamClosed("the stream was detached")
        waiter = self._loop.create_future()
        self._eof_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._eof_waiters:
                self._eof_waiters.remove(waiter)

    @property
    def closed(self):
        """close() was called, or the stream was aborted or detached."""
        return self._closing or self._sock_closed or self._detached

    @property
    def peer_gone(self):
        """A recv or send failed (reset, broken pipe): the peer cannot receive anything more."""
        return self._peer_gone

    # -- writing -------------------------------------------------------------------------------------------

    cdef object _gone(self):
        err = StreamClosed(f"the peer closed the connection ({self._exc})")
        err.__cause__ = self._exc
        return err

    cdef _check_writable(self):
        if self._peer_gone:
            raise self._gone()
        if self._closing or self._sock_closed or self._detached:
            raise StreamClosed("the stream is closed")

    cpdef Py_ssize_t write(self, data) except -1:
        """Send ``data`` now as far as the socket takes it; buffer the rest (a copy unless it is ``bytes``).

        Returns how many bytes are buffered now (0: all went out), so a caller can tell in one call whether to
        ``drain()``."""
        cdef Py_ssize_t sent = 0
        self._check_writable()
        if type(data) is not bytes:
            data = _byte_view(data)
        if not data:
            return self._wsize
        if not self._wbuf:
            sent = self._send_now(data, False)
            if sent == len(data):
                return 0
        self._buffer(data, sent)
        return self._wsize

    cpdef Py_ssize_t writelines(self, chunks) except -1:
        """Write each of ``chunks`` in order, with one ``sendmsg`` when nothing is buffered yet; returns how many
        bytes are buffered now, as ``write()`` does."""
        cdef list items = []
        cdef Py_ssize_t sent = 0, n
        self._check_writable()
        for chunk in chunks:
            if type(chunk) is not bytes:
                chunk = _byte_view(chunk)
            if chunk:
                items.append(chunk)
        if not items:
            return self._wsize
        if not self._wbuf:
            sent = self._send_now(items[:IOV_MAX], True)
        for chunk in items:
            n = len(chunk)
            if sent >= n:
                sent -= n
            else:
                self._buffer(chunk, sent)
                sent = 0
        return self._wsize

    cdef Py_ssize_t _send_now(self, object data, bint vector) except -1:
        # Nothing is buffered, so order allows sending at once: usually all of it, with no copy. A single bytes
        # object goes straight to send(2): one event of a stream is one call, and the socket object's method
        # (argument parsing, a timeout check) cost more than the rest of the write.
        cdef const char* p
        cdef ssize_t r
        cdef int err
        if self._tls:
            try:
                # (an SSL write is all or nothing here: WANT_WRITE means "again, with these same bytes")
                return self._sock.send(b"".join(data) if vector else data)
            except WOULD_BLOCK:
                return 0
            except OSError as exc:
                self._lost(exc)
                raise self._gone()
        if not vector and type(data) is bytes:
            p = <bytes>data
            while True:
                r = send(self._fd, p, len(<bytes>data), MSG_NOSIGNAL | MSG_DONTWAIT)
                if r >= 0:
                    return r
                err = errno
                if err == EINTR:
                    continue
                if err == EAGAIN:  # (EWOULDBLOCK is EAGAIN on Linux)
                    return 0
                exc = OSError(err, strerror(err))
                self._lost(exc)
                raise self._gone()
        try:
            return self._sock.sendmsg(data) if vector else self._sock.send(data)
        except WOULD_BLOCK:
            return 0
        except OSError as exc:
            self._lost(exc)
            raise self._gone()

    cdef _buffer(self, object chunk, Py_ssize_t offset):
        # bytes are immutable: keep them (a view past what was sent). Anything else is copied, since the
        # caller may reuse its buffer as soon as write() returns.
        if type(chunk) is bytes:
            self._wbuf.append(memoryview(chunk)[offset:] if offset else chunk)
        else:
            self._wbuf.append(bytes(chunk[offset:]))
        self._wsize += len(chunk) - offset
        if not self._writing:
            self._loop.add_writer(self._fd, self._writable_cb)
            self._writing = True

    def _on_writable(self):
        cdef Py_ssize_t sent
        if not self._writing:
            return
        try:
            if len(self._wbuf) == 1:
                sent = self._sock.send(self._wbuf[0])
            elif self._tls:
                sent = self._sock.send(b"".join(islice(self._wbuf, IOV_MAX)))
            else:
                sent = self._sock.sendmsg(list(islice(self._wbuf, IOV_MAX)))
        except WOULD_BLOCK:
            return
        except OSError as exc:
            self._lost(exc)
            return
        self._consume(sent)
        if not self._wbuf:
            self._loop.remove_writer(self._fd)
            self._writing = False
        if self._wsize <= self._low_water and self._drain_waiters:
            self._wake_drainers(None)

    cdef _consume(self, Py_ssize_t sent):
        cdef Py_ssize_t n
        self._wsize -= sent
        while sent:
            chunk = self._wbuf[0]
            n = len(chunk)
            if n <= sent:
                self._wbuf.popleft()
                sent -= n
            else:
                self._wbuf[0] = memoryview(chunk)[sent:]
                break

    def write_buffer_size(self):
        """Bytes accepted by write() and not yet handed to the kernel."""
        return self._wsize

    cdef object _new_drain_waiter(self):
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        return waiter

    async def drain(self):
        """Return at once while at most ``high_water`` bytes are buffered, else wait until ``high_water // 4``.

        ``StreamClosed`` if the peer is gone or the stream was closed, now or while waiting.
        """
        if self._peer_gone or self._sock_closed or self._detached:
            self._check_writable()  # raises; close() alone does not stop a drain, the flush goes on
        if self._wsize <= self._high_water:
            return
        waiter = self._new_drain_waiter()
        try:
            await waiter
        finally:
            if waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)

    # -- ending ----------------------------------------------------------------------------------------------

    cdef _wake_drainers(self, object exc):
        # exc None: the buffer went low.
        waiters, self._drain_waiters = self._drain_waiters, []
        _wake(waiters, exc)

    cdef _wake_readers(self, object exc):
        # The reader and the EOF waiters; exc None: look at the state again (data or EOF arrived).
        waiters, self._eof_waiters = self._eof_waiters, []
        if self._read_waiter is not None:
            waiters.append(self._read_waiter)
            self._read_waiter = None
        _wake(waiters, exc)
        if self._data_cb is not None and exc is None:
            self._loop.call_soon(self._fire_cb)  # (soon: this may run inside a failing write)

    cdef _stop_watching(self):
        self._pause_reading()
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    cdef _lost(self, object exc):
        if self._peer_gone or self._sock_closed or self._detached:
            return
        self._peer_gone = True
        self._exc = exc
        self._eof = True
        self._stop_watching()
        self._wbuf.clear()
        self._wsize = 0
        self._wake_drainers(self._gone())
        self._wake_readers(None)

    cdef _close_socket(self):
        if self._sock_closed or self._detached:
            return
        self._closing = True
        self._sock_closed = True
        self._eof = True
        self._stop_watching()  # before close(): the fd number may be reused at once
        self._wbuf.clear()
        self._wsize = 0
        self._sock.close()
        self._wake_drainers(StreamClosed("the stream was closed"))
        self._wake_readers(None)

    async def close(self, double timeout=5.0, bint notify=True):
        """Flush buffered output (for at most ``timeout`` seconds), then close the socket. Never raises
        ``StreamClosed``; cancelling it closes the socket at once. A TLS socket whose output all left ends with
        close_notify when ``notify`` (not for a response cut short: its client must see the cut)."""
        cdef double deadline
        if self._sock_closed or self._detached:
            return
        self._closing = True
        deadline = self._loop.time() + timeout
        try:
            while self._wsize and not self._peer_gone:
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._new_drain_waiter(), remaining)
                except (StreamClosed, asyncio.TimeoutError):
                    break
            if notify and self._tls and not self._wsize and not self._peer_gone and not self._sock_closed:
                self._stop_watching()
                send_close_notify(self._sock)
        finally:
            self._close_socket()

    def abort(self):
        """Close the socket now and drop unsent output. Pending reads see EOF, drains get StreamClosed."""
        self._close_socket()

    def detach(self):
        """Stop watching the socket and give it back open: ``(sock, unread_bytes)``.

        Only with nothing left to send (else ``RuntimeError``). Pending reads and ``wait_eof()`` get
        ``StreamClosed``; check ``peer_gone``/``at_eof()`` first if the socket is to be reused.
        """
        if self._sock_closed or self._detached:
            raise RuntimeError("the stream is already closed or detached")
        if self._wsize:
            raise RuntimeError(f"detach() with {self._wsize} bytes not sent yet: drain() first")
        self._stop_watching()
        self._detached = True
        self._data_cb = None
        sock, self._sock = self._sock, None
        unread = bytes(self._rbuf)
        self._rbuf = bytearray()
        self._wake_drainers(StreamClosed("the stream was detached"))
        self._wake_readers(StreamClosed("the stream was detached"))
        return sock, unread
