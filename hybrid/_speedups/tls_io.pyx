# cython: language_level=3
"""TLS reads and writes straight from compiled code: SSL_read_ex / SSL_write_ex on the ``SSL`` object that
Python's ``ssl`` module already made for a connection, skipping the ``SSLSocket.recv``/``send`` Python frames,
the 64 KiB ``bytes`` allocated and shrunk per read, the GIL released and taken back around each call, and the
``SSLWantReadError`` object built per would-block. The bytes on the wire are the same: same SSL object, same
session, same records; handshake, close_notify, certificates, ALPN and the async pool stay with ``ssl``.

Which OpenSSL: the one ``_ssl`` itself is linked with, found at run time with ``dlsym`` on ``_ssl``'s own handle,
so an ``SSL*`` never meets another OpenSSL's functions and the build needs no OpenSSL headers or library. Where
that cannot be proved safe the connection keeps the ``ssl`` module's path (``ssl_of`` returns NULL):
- not CPython 3.8-3.13 (the ``_ssl._SSLSocket`` struct layout, ``PyObject_HEAD; PyObject *Socket; SSL *ssl``, is
  read directly: it is the same in all of those);
- ``_ssl``'s symbols not visible (an OpenSSL linked statically into ``_ssl``, as some standalone builds do) or of
  another version than ``ssl.OPENSSL_VERSION_NUMBER``;
- the self-test at import (an SSLSocket over a socketpair: its ``SSL*`` must report that socket's fd) failed;
- ``HYBRID_TLS_DIRECT=0`` in the environment (to compare, or to rule this out).
Each connection's ``SSL*`` is also checked against its own fd before use.
"""

import os
import socket
import ssl
import sys

import _ssl

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport errno


cdef extern from "<dlfcn.h>" nogil:
    void *dlopen(const char *filename, int flags)
    void *dlsym(void *handle, const char *symbol)
    int RTLD_NOW
    int RTLD_NOLOAD

cdef extern from *:
    """
    /* The head of CPython's PySSLSocket (Modules/_ssl.c, 3.8 to 3.13). */
    typedef struct { PyObject_HEAD PyObject *Socket; void *ssl; } hybrid_PySSLSocket;
    /* One receive buffer per thread, as connection.pyx's plain one. */
    static _Thread_local char hybrid_tls_buffer[65536];
    """
    ctypedef struct hybrid_PySSLSocket:
        void *ssl
    char _tls_buffer "hybrid_tls_buffer"[65536]

ctypedef int (*ssl_io_t)(void *ssl, void *buf, size_t num, size_t *done) nogil
ctypedef int (*ssl_get_error_t)(void *ssl, int ret) nogil
ctypedef int (*ssl_get_fd_t)(void *ssl) nogil
ctypedef int (*ssl_state_t)(const void *ssl) nogil
ctypedef void (*err_clear_t)() nogil
ctypedef void (*ssl_set_int_t)(void *ssl, int yes) nogil
ctypedef int (*ssl_shutdown_t)(void *ssl) nogil
ctypedef unsigned long (*version_num_t)() nogil
ctypedef void *(*ssl_get_ctx_t)(const void *ssl) nogil
ctypedef int (*bio_test_flags_t)(const void *bio, int flags) nogil
ctypedef int (*ctx_set_str_t)(void *ctx, const char *s) nogil

cdef ssl_io_t _SSL_read_ex = NULL
cdef ssl_io_t _SSL_write_ex = NULL
cdef ssl_get_error_t _SSL_get_error = NULL
cdef ssl_get_fd_t _SSL_get_fd = NULL
cdef ssl_state_t _SSL_want = NULL
cdef ssl_state_t _SSL_get_shutdown = NULL
cdef err_clear_t _ERR_clear_error = NULL
cdef ssl_set_int_t _SSL_set_read_ahead = NULL
cdef ssl_state_t _SSL_has_pending = NULL
cdef ssl_shutdown_t _SSL_shutdown = NULL
cdef ssl_get_ctx_t _SSL_get_SSL_CTX = NULL
cdef ssl_get_ctx_t _SSL_get_rbio = NULL
cdef ssl_get_ctx_t _SSL_get_wbio = NULL
cdef bio_test_flags_t _BIO_test_flags = NULL
cdef ctx_set_str_t _SSL_CTX_set_ciphersuites = NULL

# openssl/ssl.h, fixed since OpenSSL 0.9: what SSL_want says an SSL object waits for, and SSL_get_shutdown's
# bit for a close_notify (or fatal alert) received.
DEF SSL_WRITING = 2
DEF SSL_READING = 3
DEF SSL_RECEIVED_SHUTDOWN = 2
# openssl/bio.h: the socket BIO's last read (write) said EAGAIN; what SSL_get_error checks for WANT_READ (WRITE).
DEF BIO_FLAGS_READ = 1
DEF BIO_FLAGS_WRITE = 2
# How much one tls_recv decrypts of what was read ahead before it turns read-ahead off for the rest.
DEF DRAIN_AHEAD_MAX = 262144

cdef type _SSLSocketType = _ssl._SSLSocket
cdef bint _ready = False
# Why the direct path is off in this process (None when it is on): for the startup log and the tests.
unavailable = None


cdef void *_resolve(void *handle, const char *name):
    cdef void *p = dlsym(handle, name)
    if p == NULL:
        raise LookupError(name.decode())
    return p


cdef void *_raw_ssl(object sslobj):
    return (<hybrid_PySSLSocket *><void *>sslobj).ssl


cdef _setup():
    global _SSL_read_ex, _SSL_write_ex, _SSL_get_error, _SSL_get_fd, _SSL_want, _SSL_get_shutdown
    global _ERR_clear_error, _SSL_set_read_ahead, _SSL_has_pending, _SSL_shutdown, _ready
    global _SSL_get_SSL_CTX, _SSL_CTX_set_ciphersuites, _SSL_get_rbio, _SSL_get_wbio, _BIO_test_flags
    if os.environ.get("HYBRID_TLS_DIRECT", "1") == "0":
        return "turned off (HYBRID_TLS_DIRECT=0)"
    if sys.implementation.name != "cpython" or not (3, 8) <= sys.version_info[:2] <= (3, 13):
        return f"not CPython 3.8-3.13 ({sys.implementation.name} {sys.version_info[:2]})"
    cdef void *handle = dlopen(os.fsencode(_ssl.__file__), RTLD_NOW | RTLD_NOLOAD)
    if handle == NULL:
        return "_ssl's library handle not found"
    try:
        version = (<version_num_t>_resolve(handle, b"OpenSSL_version_num"))()
        _SSL_read_ex = <ssl_io_t>_resolve(handle, b"SSL_read_ex")
        _SSL_write_ex = <ssl_io_t>_resolve(handle, b"SSL_write_ex")
        _SSL_get_error = <ssl_get_error_t>_resolve(handle, b"SSL_get_error")
        _SSL_get_fd = <ssl_get_fd_t>_resolve(handle, b"SSL_get_fd")
        _SSL_want = <ssl_state_t>_resolve(handle, b"SSL_want")
        _SSL_get_shutdown = <ssl_state_t>_resolve(handle, b"SSL_get_shutdown")
        _ERR_clear_error = <err_clear_t>_resolve(handle, b"ERR_clear_error")
        _SSL_set_read_ahead = <ssl_set_int_t>_resolve(handle, b"SSL_set_read_ahead")  # (functions since 1.1.0)
        _SSL_has_pending = <ssl_state_t>_resolve(handle, b"SSL_has_pending")
        _SSL_shutdown = <ssl_shutdown_t>_resolve(handle, b"SSL_shutdown")
        _SSL_get_SSL_CTX = <ssl_get_ctx_t>_resolve(handle, b"SSL_get_SSL_CTX")
        _SSL_CTX_set_ciphersuites = <ctx_set_str_t>_resolve(handle, b"SSL_CTX_set_ciphersuites")  # (1.1.1+)
        _SSL_get_rbio = <ssl_get_ctx_t>_resolve(handle, b"SSL_get_rbio")
        _SSL_get_wbio = <ssl_get_ctx_t>_resolve(handle, b"SSL_get_wbio")
        _BIO_test_flags = <bio_test_flags_t>_resolve(handle, b"BIO_test_flags")
    except LookupError as exc:
        return f"OpenSSL's {exc} not visible through _ssl"
    if version != ssl.OPENSSL_VERSION_NUMBER:
        return f"OpenSSL {version:#x} found, ssl reports {ssl.OPENSSL_VERSION_NUMBER:#x}"
    # Self-test: the SSL* read from an SSLSocket's _sslobj must be the one over that socket.
    a, b = socket.socketpair()
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        wrapped = ctx.wrap_socket(a, do_handshake_on_connect=False)
        sslobj = getattr(wrapped, "_sslobj", None)
        if type(sslobj) is not _SSLSocketType or _SSL_get_fd(_raw_ssl(sslobj)) != wrapped.fileno():
            return "the SSL object's layout is not the expected one"
        wrapped.close()
    except (OSError, ValueError) as exc:
        return f"self-test failed: {exc}"
    finally:
        a.close()
        b.close()
    _ready = True
    return None


unavailable = _setup()


cdef object ssl_object(object sock):
    """The ``_ssl._SSLSocket`` under an SSLSocket whose direct reads and writes are safe, else None. Whoever
    keeps it keeps the ``SSL*`` alive (it is freed with that object)."""
    if not _ready or not isinstance(sock, ssl.SSLSocket):
        return None
    sslobj = getattr(sock, "_sslobj", None)
    if type(sslobj) is not _SSLSocketType or _SSL_get_fd(_raw_ssl(sslobj)) != sock.fileno():
        return None
    return sslobj


# Why a call failed: "not now" is read from the SSL object's own state (SSL_want: it waits to read or to write)
# and its socket BIO's (that wait was an EAGAIN), SSL_get_error's own test, rather than from SSL_get_error, which
# looks at the thread's error queue first and so needs it emptied (ERR_clear_error, 16 slots: about 800
# instructions) before every call. The queue is only read, and then emptied, when a call really failed.

cdef inline bint _not_now(void *s):
    # SSL_want says what the failed call waited for, and the socket BIO whether that wait was an EAGAIN: after
    # a reset or an EOF OpenSSL's state stays "reading" (and later calls fail at once, reading nothing), so
    # SSL_want alone made a dead connection look idle, and level-triggered epoll reported it again and again.
    cdef int want = _SSL_want(s)
    if want == SSL_READING:
        return _BIO_test_flags(_SSL_get_rbio(s), BIO_FLAGS_READ) != 0
    if want == SSL_WRITING:
        return _BIO_test_flags(_SSL_get_wbio(s), BIO_FLAGS_WRITE) != 0
    return False


cdef object tls_recv(object sslobj):
    """What the client sent so far, decrypted: the bytes, b"" at the end of the stream (close_notify or an alert
    received), None when nothing can be read now. OSError on a failure (a ragged EOF among them).

    With read-ahead on (``set_read_ahead``) one read(2) may bring several records: they are all decrypted here,
    as long as OpenSSL holds bytes (``SSL_has_pending``), because epoll only sees the kernel's buffer. What may
    stay is the start of one record whose rest has not arrived (its read(2) said EAGAIN): epoll says when it
    does, as without read-ahead."""
    cdef void *s = _raw_ssl(sslobj)
    cdef size_t n = 0
    if _SSL_read_ex(s, _tls_buffer, sizeof(_tls_buffer), &n) != 1:
        if _not_now(s):
            return None
        if _SSL_get_shutdown(s) & SSL_RECEIVED_SHUTDOWN:
            _ERR_clear_error()
            return b""
        _failed(s, "read")
    if not _SSL_has_pending(s):  # (the common case: one record, one read(2))
        return PyBytes_FromStringAndSize(_tls_buffer, n)
    return _drain(s, n)


cdef object _drain(void *s, size_t n):
    # The records read ahead, after the n bytes in _tls_buffer. Bounded: after DRAIN_AHEAD_MAX bytes read-ahead
    # is turned off for the rest (OpenSSL then reads only what completes the record it is in: at most one more
    # read(2) per record already buffered), so a client sending without a pause cannot hold the thread here.
    cdef list parts = []
    cdef size_t total = n
    cdef size_t done
    cdef bint ahead_off = False
    try:
        while _SSL_has_pending(s):
            if n == sizeof(_tls_buffer):
                parts.append(PyBytes_FromStringAndSize(_tls_buffer, n))
                n = 0
            if total >= DRAIN_AHEAD_MAX and not ahead_off:
                _SSL_set_read_ahead(s, 0)
                ahead_off = True
            done = 0
            if _SSL_read_ex(s, _tls_buffer + n, sizeof(_tls_buffer) - n, &done) != 1:
                if _not_now(s):
                    break  # the rest of a record is not here yet
                if _SSL_get_shutdown(s) & SSL_RECEIVED_SHUTDOWN:
                    _ERR_clear_error()  # (what came before the close_notify is served; the EOF is seen next)
                    break
                _failed(s, "read")
            n += done
            total += done
    finally:
        if ahead_off:
            _SSL_set_read_ahead(s, 1)
    parts.append(PyBytes_FromStringAndSize(_tls_buffer, n))
    return b"".join(parts)


# HYBRID_TLS_READ_AHEAD=0: leave it off (ssl's default), to compare.
cdef bint _read_ahead_allowed = os.environ.get("HYBRID_TLS_READ_AHEAD", "1") != "0"


def set_read_ahead(object sock, bint on):
    """Let OpenSSL read(2) as much as the kernel has (on), or only one record's header and then its body (off,
    ``ssl``'s default: two read(2) per record). On only while tls_recv reads the connection: it decrypts all
    that was read ahead; the async pool's reads through ``SSLSocket.recv`` do not (they see ``pending()``, the
    decrypted bytes only). Nothing happens where the direct path is off."""
    if on and not _read_ahead_allowed:
        return
    sslobj = ssl_object(sock)
    if sslobj is not None:
        _SSL_set_read_ahead(_raw_ssl(sslobj), on)


cdef Py_ssize_t tls_send(object sslobj, bytes data) except -1:
    """One SSL_write_ex of all of ``data``: its length, or 0 when it must be retried with the same bytes later
    (OpenSSL's rule; Python's ssl sets no partial writes, so nothing in between). OSError on a failure."""
    cdef Py_ssize_t size = len(data)
    if size == 0:
        return 0
    cdef void *s = _raw_ssl(sslobj)
    cdef size_t n = 0
    if _SSL_write_ex(s, PyBytes_AS_STRING(data), size, &n) == 1:
        return n
    if _not_now(s):
        return 0
    _failed(s, "write")


def take_read_ahead(object sock):
    """Read-ahead off, and the bytes it had read, decrypted (b"" if none): before the socket goes where reads
    are ``SSLSocket.recv`` (the pool's HTTP/2 after a handshake that read the client's first frames ahead)."""
    sslobj = ssl_object(sock)
    if sslobj is None:
        return b""
    cdef void *s = _raw_ssl(sslobj)
    _SSL_set_read_ahead(s, 0)
    if not _SSL_has_pending(s):
        return b""
    return _drain(s, 0)


def close_notify(object sock):
    """Our close_notify, one SSL_shutdown: True when sent this way (else the caller falls back to
    ``SSLSocket.unwrap``). ``unwrap`` calls SSL_shutdown a second time to read the peer's alert, which a
    closing server does not wait for: a read(2) that says EAGAIN, and an SSLWantReadError raised."""
    sslobj = ssl_object(sock)
    if sslobj is None:
        return False
    if _SSL_shutdown(_raw_ssl(sslobj)) < 0:  # (a peer gone, a full send buffer: no alert, as with unwrap)
        _ERR_clear_error()
    return True


def set_tls13_suites(object ctx, str suites):
    """The TLS 1.3 cipher suites of a server SSLContext, in preference order (``ssl`` has no call for them:
    ``set_ciphers`` is TLS 1.2's list). Set on the context's ``SSL_CTX``, found through an SSL object made from
    it (whose layout the self-test proved); connections wrapped afterwards get them. True when set, False
    where the direct path is off (the context keeps OpenSSL's order). ValueError if OpenSSL refuses the list."""
    if not _ready:
        return False
    probe = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    sslobj = getattr(probe, "_sslobj", None)
    if type(sslobj) is not _SSLSocketType:
        return False
    cdef void *sctx = _SSL_get_SSL_CTX(_raw_ssl(sslobj))
    if sctx == NULL:
        return False
    if _SSL_CTX_set_ciphersuites(sctx, suites.encode()) != 1:
        _ERR_clear_error()
        raise ValueError(f"OpenSSL refused the TLS 1.3 suites {suites!r}")
    return True


cdef int _failed(void *s, str what) except -1:
    cdef int saved = errno
    cdef int err = _SSL_get_error(s, 0)
    _ERR_clear_error()  # (so that no stale entry is left for a later call on this thread)
    raise ssl.SSLError(err, f"TLS {what} failed (SSL_get_error {err}, errno {saved})")
