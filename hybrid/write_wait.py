"""A response the kernel did not take at once: waiting while a slow client reads it, bounded by
--timeout-write-stall (``Connection.finish_write``, hybrid/_speedups/connection.pyx; TLSConnection has its own).

Off the per-request path (a plain response leaves in one ``send``), so plain Python.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import struct
import termios

from hybrid._speedups.cycle import ClientDisconnected

logger = logging.getLogger("hybrid.error")

_OUTQ = struct.Struct("i")


def unsent_bytes(fd):
    """Bytes in the socket's kernel send queue not yet acknowledged by the peer (SIOCOUTQ)."""
    try:
        return _OUTQ.unpack(fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def stall_tick(stall):
    """How often a write waiting on a slow client looks at its progress (--timeout-write-stall ``stall``)."""
    return min(stall / 4, 1.0)


def resolve(future):
    """A reader/writer callback: the awaited socket is ready (at most once)."""
    if not future.done():
        future.set_result(None)


async def finish_write(conn, rest):
    """The kernel did not take everything: the connection's loop sends the rest as the client reads. A client
    that takes nothing for --timeout-write-stall seconds is cut off (its response would pin the request and
    its buffers forever); a slow but steady reader is not. The ClientDisconnected raised when cut off
    carries ``unsent``: how many of ``rest``'s bytes the kernel never took (for the access log)."""
    loop, sock, fd = conn.loop, conn.sock, conn.fd
    stall = conn.server.config.timeout_write_stall
    progress = loop.time()
    try:
        queued = unsent_bytes(fd)
        while rest:
            writable = loop.create_future()
            loop.add_writer(fd, resolve, writable)
            try:
                async with asyncio.timeout(stall_tick(stall)):
                    await writable
            except TimeoutError:
                # Not writable yet is not the same as stalled: the kernel reports writable only once half of
                # a large send queue has gone. Progress is the queue shrinking; a stall is measured from the
                # last progress, so it is cut within a tick of --timeout-write-stall.
                now_queued = unsent_bytes(fd)
                if now_queued < queued:
                    progress = loop.time()
                elif loop.time() - progress >= stall:
                    raise
                queued = now_queued
                continue
            finally:
                if conn.sock is sock:  # (closed meanwhile: the fd number may be another connection's now)
                    loop.remove_writer(fd)
            try:
                rest = rest[sock.send(rest):]
            except (BlockingIOError, InterruptedError):
                pass
            queued = unsent_bytes(fd)
            progress = loop.time()
    except TimeoutError:
        conn.disconnected = True
        logger.info("Closed a connection whose client read none of the response for %g s "
                    "(--timeout-write-stall).", conn.server.config.timeout_write_stall)
        cut = ClientDisconnected("Client stopped reading the response")
    except OSError as exc:
        conn.disconnected = True
        cut = ClientDisconnected(f"Client disconnected: {exc}")
    else:
        return
    cut.unsent = len(rest)
    raise cut from None
