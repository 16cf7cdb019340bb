"""An accepted socket wrapped in a server-side SSLSocket with three system calls fewer than ``ssl`` makes.

``SSLContext.wrap_socket`` (``SSLSocket._create``) checks what an accepted TCP socket already is: its type
(``getsockopt(SO_TYPE)``), that it is connected (``getpeername``), and sets its timeout again
(``ioctl(FIONBIO)``); it also reads ``family``/``type`` through properties that build enum members. On this
project's VM a system call costs microseconds, and a new HTTPS connection paid all of them
(docs/performance.md, "HTTPS new connections"). ``wrap_accepted`` builds the same object: the same attributes,
the same ``_ssl`` object made by the context's own ``_wrap_socket``; only those checks are left out.

It is used only when a self-test at import, on a socketpair, finds the object it builds equal in attributes to
``wrap_socket``'s (``ssl.py`` is CPython's private code: another version may set other attributes); otherwise,
and with ``HYBRID_TLS_FAST_WRAP=0``, every socket goes through ``wrap_socket``.
"""

from __future__ import annotations

import os
import socket
import ssl

_NONBLOCK_STREAM = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)


def _build(ctx: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
    family = int(sock.family)
    fd = sock.detach()
    # SOCK_NONBLOCK in the type: the object's timeout is 0.0 from the start (the fd is non-blocking already), no
    # ioctl; its ``type`` still reads SOCK_STREAM. socket's own check of the fd (a getsockname) stays.
    self = ssl.SSLSocket.__new__(ssl.SSLSocket, family, _NONBLOCK_STREAM, 0, fd)
    socket.socket.__init__(self, family, _NONBLOCK_STREAM, 0, fd)
    self._context = ctx
    self._session = None
    self._closed = False
    self._sslobj = None
    self.server_side = True
    self.server_hostname = None
    self.do_handshake_on_connect = False
    self.suppress_ragged_eofs = True
    self._connected = True
    try:
        self._sslobj = ctx._wrap_socket(self, True, None, owner=self, session=None)
    except (OSError, ValueError):
        self.close()
        raise
    return self


def _self_test() -> bool:
    if os.environ.get("HYBRID_TLS_FAST_WRAP", "1") == "0" or not _NONBLOCK_STREAM & ~socket.SOCK_STREAM:
        return False
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pairs = [socket.socketpair(), socket.socketpair()]
    try:
        for a, _ in pairs:
            a.setblocking(False)
        ours = _build(ctx, pairs[0][0])
        theirs = ctx.wrap_socket(pairs[1][0], server_side=True, do_handshake_on_connect=False)
        same = (type(ours) is type(theirs) and vars(ours) == {**vars(theirs), "_sslobj": ours._sslobj}
                and type(ours._sslobj) is type(theirs._sslobj) and ours.gettimeout() == theirs.gettimeout() == 0.0
                and ours.type == theirs.type and ours.family == theirs.family and ours._closed == theirs._closed)
        ours.close()
        theirs.close()
        return same
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    finally:
        for a, b in pairs:
            a.close()
            b.close()


_FAST = _self_test()


def wrap_accepted(ctx: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
    """A server-side SSLSocket over an accepted, non-blocking TCP socket, not handshaken (``sock`` is detached)."""
    # (timeout 0.0: Python made the fd non-blocking, so the new object's 0.0 without an ioctl is true)
    if _FAST and type(sock) is socket.socket and sock.gettimeout() == 0.0 and sock.family != socket.AF_UNIX:
        return _build(ctx, sock)
    return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
