"""The epoll set connections wait in, and the accept helpers; the connection itself is compiled.

A ``ConnectionSet`` is a level-triggered epoll set of listeners and idle keep-alive connections, owned by one
SyncWorker thread at a time (sync_worker.py); the monitor hands a whole set to a spare thread at a takeover.
``Connection`` (one client connection: read, parse, run the app, write) lives in hybrid/_speedups/connection.pyx,
where its docstring follows one request from the readable socket to the write.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import socket
import struct
import termios
import threading
from collections import deque

from hybrid._speedups.connection import (
    DISCARD_LIMIT,
    MAX_BACKLOG_EVENTS,
    MIN_BODY_RATE,
    RECV_SIZE,
    WOULD_BLOCK,
    Connection,
    resolve,
    stall_tick,
    unsent_bytes,
)
from hybrid._speedups.held import HeldBatch

__all__ = ["DISCARD_LIMIT", "MAX_BACKLOG_EVENTS", "MIN_BODY_RATE", "RECV_SIZE", "WOULD_BLOCK", "Connection",
           "ConnectionSet", "accept_into", "accepted_addresses", "resolve", "stall_tick", "still_sending",
           "unread_bytes", "unsent_bytes"]

logger = logging.getLogger("hybrid.error")


def accept_into(listener: socket.socket, adopt, batch: int, limit) -> None:
    """Accept up to ``batch`` queued connections, giving each to ``adopt(sock, addr)``; stop at an empty queue or
    at --limit-connections (``limit``: then the listeners leave the epoll sets and clients wait in the backlog)."""
    for _ in range(batch):
        if limit is not None and limit.full():
            limit.pause()
            return
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                logger.warning("Cannot accept connections: %s", exc.strerror)
            return
        adopt(sock, addr)


def accepted_addresses(sock: socket.socket, addr, uds: str | None) -> tuple:
    """Make an accepted socket ready to serve (non-blocking, TCP_NODELAY); its (client, server) addresses."""
    sock.setblocking(False)
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return addr[:2], sock.getsockname()[:2]
    return None, (sock.getsockname() or uds, None)


def still_sending(conn: Connection, queued: int, now: float, stall: float) -> bool:
    """Whether a connection past its keep-alive time is still sending its last response: ``queued`` bytes of it
    are not with the client yet (a slow reader has megabytes in the kernel's queue). It is not idle until the
    client has them all, and a request it pipelines meanwhile must not meet a closed socket (a reset, which
    also drops the rest). While the queue shrinks the idle time starts again (``conn.last_active``); a queue
    stuck for --timeout-write-stall is a client that stopped reading: idle after all."""
    if not queued:
        return False
    if queued != getattr(conn, "queued", 0):  # progress
        conn.queued = queued
        conn.last_active = now
        return True
    return conn.last_active >= now - stall


_INQ = struct.Struct("i")


def unread_bytes(fd: int) -> int:
    """Bytes the client sent that nobody has read yet (FIONREAD). A connection past its keep-alive time with some
    is not idle: its request came while its thread could not read (blocked with no takeover, a process stopped);
    closing it would reset the client and lose the request. The set reports it readable and serves it."""
    try:
        return _INQ.unpack(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


class ConnectionSet:
    """A level-triggered epoll set of listeners and idle connections; owned by one thread at a time."""

    def __init__(self, listeners: list[socket.socket]) -> None:
        self.epoll = select.epoll()
        self.fd = self.epoll.fileno()
        self.conns: dict[int, Connection] = {}
        self.listeners = {sock.fileno(): sock for sock in listeners}
        for fd in self.listeners:
            self.epoll.register(fd, select.EPOLLIN)
        # Listeners leave the epoll set at --limit-connections (other threads may ask: a connection closing in
        # the pool resumes accepting) and for good at shutdown; the lock keeps a resume from undoing a stop.
        self._listening = threading.Lock()
        self._paused = False
        # Connections given back with requests already read (pipelined behind a stream the pool served): the
        # eventfd, in the set, wakes whoever owns the set when it polls, and tells the monitor the set has work.
        # (Posting them to "the owner" instead could pick a thread blocked in a handler, mid-takeover, or none.)
        self.resumed: deque[Connection] = deque()
        # Responses held by the connections the owner served in its current batch, written when it ends
        # (Connection.send_last, hybrid/_speedups/held.pyx; hybrid/held_write.py).
        self.held = HeldBatch()
        # The owner's last batch of ready events (an iterator): a spare that takes the set over mid-batch serves
        # the rest first (SyncWorker._own); after a whole batch it is exhausted.
        self.batch = None
        self.h2_streams: deque = deque()  # HTTP/2 streams whose apps the owner runs (hybrid/h2/crossing.py)
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.epoll.register(self.wake_fd, select.EPOLLIN)

    def add_ready(self, conn: Connection) -> None:
        """From any thread: ``conn`` joins the set with requests already read; the set's owner serves them
        (``SyncWorker._on_ready``) without waiting for the client's next bytes."""
        self.add(conn)
        self.resumed.append(conn)
        os.eventfd_write(self.wake_fd, 1)

    def wake_h2(self) -> None:
        """From the pool's loop: HTTP/2 streams were appended to ``h2_streams``; the set's owner runs their apps
        (``SyncWorker._serve_resumed``). After a takeover that is the spare, not the thread a handler holds."""
        os.eventfd_write(self.wake_fd, 1)

    def take_ready(self) -> deque[Connection]:
        """The owner, woken by ``wake_fd``: the queue to serve (entries appended after this wake it again)."""
        try:
            os.eventfd_read(self.wake_fd)
        except BlockingIOError:
            pass
        return self.resumed

    def close(self) -> None:
        self.epoll.close()
        os.close(self.wake_fd)

    def add(self, conn: Connection) -> None:
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, select.EPOLLIN)
        conn.registered = True
        conn.home = self

    def remove(self, conn: Connection) -> None:
        self.conns.pop(conn.fd, None)
        if conn.registered:
            conn.registered = False
            try:
                self.epoll.unregister(conn.fd)
            except OSError:  # already removed by the monitor at a takeover
                pass

    def stop_accepting(self) -> None:
        with self._listening:
            for fd in list(self.listeners):
                try:
                    self.epoll.unregister(fd)
                except OSError:
                    pass
            self.listeners = {}

    def pause_accepting(self) -> None:
        with self._listening:
            if not self._paused:
                self._paused = True
                for fd in self.listeners:
                    try:
                        self.epoll.unregister(fd)
                    except OSError:
                        pass

    def resume_accepting(self) -> None:
        with self._listening:
            if self._paused:
                self._paused = False
                for fd in self.listeners:
                    try:
                        self.epoll.register(fd, select.EPOLLIN)
                    except OSError:  # the set was closed: the server is going away
                        pass
