"""The listening sockets of one process (or of a supervisor, whose workers share them): bound before lifespan
startup, listening only after it (so no client is accepted and left unanswered), described in the banner, closed.
How the last queued connections are taken at shutdown without resetting a client: hybrid/door.py."""

from __future__ import annotations

import os
import socket
import stat

from hybrid.config import ServerConfig
from hybrid.shutdown import StartupError


def bind_listeners(config: ServerConfig) -> list[socket.socket]:
    """Bind (not listen: nothing is accepted, not even by the kernel, before lifespan startup completes; see
    start_listening). An inherited --fd socket is used as it is."""
    if config.fd is not None:
        sock = socket.socket(fileno=config.fd)
        if sock.type != socket.SOCK_STREAM:
            raise StartupError(f"--fd {config.fd} is not a stream socket")
    elif config.uds is not None:
        path = config.uds
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # a stale socket file from an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise StartupError(f"Cannot bind unix socket {path!r}: {exc.strerror}") from None
        os.chmod(path, 0o666)
    else:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError as exc:
            sock.close()
            raise StartupError(f"Cannot bind {config.host}:{config.port}: {exc.strerror}") from None
    if config.fd is not None:
        start_listening(config, [sock])
    sock.setblocking(False)
    return [sock]


def start_listening(config: ServerConfig, sockets: list[socket.socket]) -> None:
    """After lifespan startup: clients may connect from now on (again, harmlessly, on a socket already listening:
    a supervisor's, which the first ready worker starts)."""
    for sock in sockets:
        try:
            sock.listen(config.backlog)
        except OSError as exc:
            raise StartupError(f"Cannot listen on {config.bind_description}: {exc.strerror}") from None


def describe_listeners(config: ServerConfig, sockets: list[socket.socket]) -> str:
    if config.uds is None and config.fd is None:
        host, port = sockets[0].getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if config.tls else 'http'}://{host}:{port}"
    return config.bind_description


def close_listeners(config: ServerConfig, sockets: list[socket.socket], *, owner: bool) -> None:
    """Close our copies of the listening sockets; ``owner`` (who bound them) also removes a unix socket's file."""
    for sock in sockets:
        if config.fd is None:
            sock.close()
        else:
            sock.detach()  # an inherited descriptor belongs to whoever passed it
    if owner and config.uds is not None:
        try:
            os.unlink(config.uds)
        except OSError:
            pass
