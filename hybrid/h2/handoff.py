"""How a connection reaches HTTP/2: a SyncWorker hands it to the async pool before any app code runs.

Two doors, both off the HTTP/1.1 hot path:
- h2c with prior knowledge: the preface ``PRI * HTTP/2.0`` is no HTTP/1.1 request, so ``H1Protocol`` raises an
  ``H1Error`` on it; only that error path (``Connection._feed``) looks for the preface.
- TLS: the handshake's ALPN picked ``h2`` (``TLSConnection._handshake_step``, once per connection).
"""

from __future__ import annotations

from dataclasses import dataclass

from hybrid.h2 import PREFACE


@dataclass(frozen=True, slots=True)
class H2Handoff:
    sock: object           # the socket (plain or a handshaken SSLSocket); the worker let go of it
    initial: bytes         # bytes the worker already read (the preface and what followed it), or b""
    client: tuple | None
    server: tuple | None
    scheme: str            # "http" or "https"
    home: object           # the connection's home set (unused by HTTP/2: the connection never goes back)


def is_h2c_preface(conn, data) -> bool:
    """The bytes that failed to parse as HTTP/1.1 are the h2c preface at the start of a connection."""
    return conn.cycle is None and not conn.backlog and bytes(data[:len(PREFACE)]) == PREFACE


def hand_off(conn, initial: bytes) -> None:
    """Give ``conn`` (a worker's Connection) to the async pool as an HTTP/2 connection and forget it: from here on
    the pool owns the socket. No app code has run for it."""
    if conn.registered:
        conn.home.remove(conn)
    conn._stop_reading()
    sock, conn.sock = conn.sock, None  # (the worker's _serve and _settle stop at once: not ours any more)
    stream = getattr(conn, "stream", None)
    if stream is not None:  # --mode async: an AsyncConnection reads through a SocketStream on the pool loop
        sock, unread = stream.detach()
        initial = bytes(initial) + unread
    conn.cycle = None
    conn.server.connections.discard(conn)
    conn.server.pool.accept_h2(H2Handoff(sock=sock, initial=bytes(initial), client=conn.client_addr,
                                         server=conn.server_addr, scheme=conn.scheme, home=conn.home))


def hand_off_tls(server, sock, client, local) -> bool:
    """--mode async: a handshaken SSLSocket whose ALPN is h2 goes to HTTP/2; False if it is HTTP/1.1."""
    if sock.selected_alpn_protocol() != "h2":
        return False
    server.pool.accept_h2(H2Handoff(sock=sock, initial=b"", client=client, server=local, scheme="https",
                                    home=None))
    return True
