"""TLS: the server's SSLContext (from the --ssl-* options) and TLSConnection, a Connection whose socket is a
non-blocking ``ssl.SSLSocket``.

Where TLS lives:
- Accept (``SyncWorker.adopt``): with TLS on, the server's connection class is TLSConnection (chosen once per
  server, so the plain-text path has no TLS branch at all). It wraps the accepted socket without handshaking.
- Handshake: the connection waits in its epoll set like an idle one. Each time bytes arrive the set's owner steps
  ``do_handshake()`` once (non-blocking: WANT_READ means wait for more, WANT_WRITE adds EPOLLOUT until the flight
  left). No thread ever waits for a client's handshake; the owner's once-a-second sweep closes connections still
  handshaking ``--timeout-tls-handshake`` seconds after they were accepted (silent or trickling clients).
- Requests: ``Connection``'s own reading and writing code; its TLS branch calls OpenSSL on the SSLSocket's own
  SSL object from compiled code (hybrid/_speedups/tls_io.pyx), or, where that is off, the SSLSocket's
  ``recv``/``send`` (SSLWantRead/WriteError caught beside BlockingIOError). What differs is here: no
  ``sendmsg`` (the parts are joined), and no ``loop.sock_sendall`` (asyncio refuses SSLSockets).
- Handoffs: the SSLSocket itself (its TLS session) goes to the async pool; SocketStream (streams.pyx) reads and
  writes through it, and gives it back to a worker as a TLSConnection after a stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import ssl
import time

from hybrid._speedups.cycle import ClientDisconnected
from hybrid._speedups.tls_io import set_read_ahead, set_tls13_suites, take_read_ahead
from hybrid.config import ConfigError, ServerConfig
from hybrid.connection import Connection, resolve, stall_tick, unsent_bytes
from hybrid.tls_info import send_close_notify

logger = logging.getLogger("hybrid.error")

# TLS 1.3 suites, ours first (Python's contexts prefer the server's order): OpenSSL's three, AES-128-GCM before
# AES-256-GCM. Every hash of the handshake (transcript, HKDF key schedule, Finished) is the suite's: SHA-256 with
# the CPU's SHA instructions against SHA-384 in software, about 50 µs less per new connection here
# (docs/performance.md, "HTTPS new connections"). AES-128-GCM is RFC 8446's mandatory suite (section 9.1).
TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
# TLS 1.3 session tickets sent after each full handshake (OpenSSL's default is 2): one still lets a client
# resume, and each ticket costs an encrypted session, three getpid and a write(2) of its own (a client wake-up).
SESSION_TICKETS = 1

WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _fail(option: str, why: str) -> ConfigError:
    return ConfigError(f"Invalid value for '--{option}': {why}")


def _reason(exc: ssl.SSLError) -> str:
    return (exc.reason or str(exc)).replace("_", " ").lower() if isinstance(exc, ssl.SSLError) else str(exc)


def create_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's SSLContext, or None when TLS is off. A bad option raises ConfigError naming it."""
    if not config.tls:
        return None
    for option in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs"):
        path = getattr(config, option)
        if path is not None and not os.path.isfile(path):
            raise _fail(option.replace("_", "-"), f"no such file {path!r}")
    # PROTOCOL_TLS_SERVER: TLS 1.2 and 1.3 only, and Python's cipher defaults (ECDHE with AES-GCM/ChaCha20,
    # security level 2), unless --ssl-ciphers says otherwise.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    password = config.ssl_keyfile_password

    def get_password():
        if password is None:  # else OpenSSL would prompt on the terminal, and a server would hang there
            raise _fail("ssl-keyfile-password", "the private key is encrypted: give its password")
        return password

    try:
        ctx.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, get_password)
    except ConfigError:
        raise
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise _cert_chain_error(config, exc) from None
    ctx.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ca_certs is not None:
        try:
            ctx.load_verify_locations(config.ssl_ca_certs)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise _fail("ssl-ca-certs", f"cannot load CA certificates from {config.ssl_ca_certs!r}: "
                                        f"{_reason(exc)}") from None
    if config.ssl_ciphers is not None:
        try:
            ctx.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise _fail("ssl-ciphers", f"{config.ssl_ciphers!r} selects no cipher OpenSSL knows") from None
    # h2 first: OpenSSL picks the first of ours the client offers, so HTTP/2 is preferred (--http auto).
    ctx.set_alpn_protocols(["h2", "http/1.1"] if config.http2 else ["http/1.1"])
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # (TLS 1.2) a client could otherwise make a write wait for a read
    ctx.num_tickets = SESSION_TICKETS
    set_tls13_suites(ctx, TLS13_SUITES)  # (where tls_io's direct path is off, OpenSSL's order stays)
    return ctx


def _cert_chain_error(config: ServerConfig, exc: Exception) -> ConfigError:
    """Say which option is wrong when load_cert_chain fails: the certificate, the key, or the password."""
    reason = _reason(exc)
    if "key values mismatch" in reason:
        return _fail("ssl-keyfile", f"the private key does not match the certificate in {config.ssl_certfile!r}")
    if config.ssl_keyfile_password is not None and ("bad decrypt" in reason or "decrypt" in reason):
        return _fail("ssl-keyfile-password", "wrong password for the private key")
    try:  # does the certificate file hold certificates at all?
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(config.ssl_certfile)
    except (ssl.SSLError, OSError, ValueError):
        return _fail("ssl-certfile", f"{config.ssl_certfile!r} holds no PEM certificate ({reason})")
    if config.ssl_keyfile_password is not None:
        return _fail("ssl-keyfile-password", f"cannot decrypt the private key with it ({reason})")
    where = "ssl-keyfile" if config.ssl_keyfile is not None else "ssl-certfile"
    return _fail(where, f"no usable private key in {getattr(config, where.replace('-', '_'))!r} ({reason})")


def tls_io_path() -> str:
    """How a worker's TLS connections read and write (for the debug log)."""
    from hybrid._speedups import tls_io

    if tls_io.unavailable is not None:
        return f"through the ssl module ({tls_io.unavailable})"
    return f"compiled, SSL_read_ex/SSL_write_ex of {ssl.OPENSSL_VERSION} (hybrid/_speedups/tls_io.pyx)"


class TLSConnection(Connection):
    """A Connection over a non-blocking SSLSocket; handshakes first, stepped by its epoll set's owner."""

    __slots__ = ("want_write",)  # (handshake_deadline is Connection's: its on_readable steps the handshake)
    scheme = "https"

    def __init__(self, server, sock, home, client_addr, server_addr, *, handshaken: bool = False) -> None:
        if not handshaken:
            sock = server.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        super().__init__(server, sock, home, client_addr, server_addr)
        self.handshake_deadline = 0.0 if handshaken else time.monotonic() + server.config.timeout_tls_handshake
        self.want_write = False
        set_read_ahead(sock, True)  # (the handshake's records too: a ClientHello in one read(2), not two)

    def _handshake_step(self) -> bool:
        """One non-blocking step of the handshake; True once it is done (then read the request, if any)."""
        try:
            # The SSL object's own step: SSLSocket.do_handshake would also set the socket's timeout back after
            # it (an ioctl per step) for a non-blocking socket that never changes.
            self.sock._sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._watch_writable(False)
            return False
        except ssl.SSLWantWriteError:  # our flight did not fit in the socket buffer: wait until it can go
            logger.debug("TLS handshake with %s waits to write its flight", self.client_addr)
            self._watch_writable(True)
            return False
        except (ssl.SSLError, OSError) as exc:  # not TLS (plain HTTP), a refused client certificate, a reset
            logger.debug("TLS handshake with %s failed: %s", self.client_addr, exc)
            self.close()
            return False
        self._watch_writable(False)
        self.handshake_deadline = 0.0
        self.last_active = time.monotonic()
        if self.sock.selected_alpn_protocol() == "h2":  # (offered only with --http auto): to the pool's HTTP/2
            from hybrid.h2.handoff import hand_off

            hand_off(self, take_read_ahead(self.sock))  # (the client's first frames may be read ahead already)
            return False
        return True

    # Read-ahead (one read(2) per request instead of a record's header and then its body) is on while this
    # worker reads the connection: tls_recv decrypts every record read ahead. The pool reads through
    # SSLSocket.recv, which would leave records read ahead unseen by epoll: off before every handoff.

    def _hand_off(self, request):
        set_read_ahead(self.sock, False)
        Connection._hand_off(self, request)

    def _hand_off_websocket(self, request):
        set_read_ahead(self.sock, False)
        Connection._hand_off_websocket(self, request)

    def _watch_writable(self, on: bool) -> None:
        if on != self.want_write and self.registered:
            self.want_write = on
            self.home.epoll.modify(self.fd, select.EPOLLIN | (select.EPOLLOUT if on else 0))

    def close(self) -> None:
        # close_notify first (RFC 8446 section 6.1), unless a response is cut short: a client reading a body
        # to the close must see the cut, not a clean end. A response held for the batch's end goes before it:
        # nothing may follow a close_notify.
        if self.sock is not None and self.held_out is not None:
            try:
                self.send_now(b"")
            except (OSError, ClientDisconnected):
                pass
        if self.sock is not None and not self.handshake_deadline and not self.proto.mid_response:
            send_close_notify(self.sock)
        Connection.close(self)

    async def finish_write(self, rest) -> None:
        """Send the rest as the client reads (asyncio's sock_sendall refuses SSLSockets)."""
        view = memoryview(rest)
        loop = self.loop
        stall = self.server.config.timeout_write_stall
        tick = stall_tick(stall)
        queued = unsent_bytes(self.fd)
        progress = loop.time()
        while view:
            try:
                sent = self.sock.send(view)
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                ready = await self._ready(loop.add_writer, loop.remove_writer, tick)
            except ssl.SSLWantReadError:  # (a TLS 1.2 renegotiation) we must read first
                ready = await self._ready(loop.add_reader, loop.remove_reader, tick)
            except (OSError, AttributeError) as exc:  # AttributeError: closed meanwhile (sock is None)
                self.disconnected = True
                cut = ClientDisconnected(f"Client disconnected: {exc}")
                cut.unsent = len(view)  # (for the access log, as in Connection.finish_write)
                raise cut from None
            else:
                view = view[sent:]
                queued = unsent_bytes(self.fd)
                progress = loop.time()
                continue
            # --timeout-write-stall, as in Connection.finish_write: progress is the kernel queue shrinking, and
            # a stall is counted from the last progress.
            now_queued = unsent_bytes(self.fd)
            if ready or now_queued < queued:
                progress = loop.time()
            elif loop.time() - progress >= stall:
                self.disconnected = True
                logger.info("Closed a connection whose client read none of the response for %g s "
                            "(--timeout-write-stall).", stall)
                cut = ClientDisconnected("Client stopped reading the response")
                cut.unsent = len(view)
                raise cut
            queued = now_queued

    async def _ready(self, add, remove, timeout: float) -> bool:
        """Wait until the socket is ready (True) or ``timeout`` seconds pass (False)."""
        waiter = self.loop.create_future()
        fd = self.fd
        add(fd, resolve, waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            if self.sock is not None:  # (closed meanwhile: the fd number may be another connection's now)
                remove(fd)
