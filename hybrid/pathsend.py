"""The ASGI ``http.response.pathsend`` extension: a response body that is a file, sent by the server.

https://asgi.readthedocs.io/en/latest/extensions.html#path-send. Starlette's ``FileResponse`` (so FastAPI's)
sends ``{"type": "http.response.pathsend", "path": ...}`` instead of body chunks when the scope advertises it.
RequestCycle.send (hybrid/_speedups/cycle.pyx) hands that message to ``send_path``:

- The file is opened and checked first: not there, or not a regular file (a directory, a FIFO), is an error
  raised into the app before anything is written, so the client gets a 500. The app's ``Content-Length`` must
  be the file's size (a mismatch is the same 500); without one the server adds it.
- A file of at most 8 KiB whose length the app declared is read whole and leaves with its head in one write
  (hybrid/pathsend_small.py: one system call fewer, no fstat; its read is the length check).
- Otherwise the head goes out, then the body: ``sendfile(2)`` from the page cache to the socket, no copy through
  Python.
  The worker thread that ran the app sends what the kernel takes at once (for a client that keeps up, a file
  of a few MiB on loopback: all of it, with no handoff). If more than ``POOL_THRESHOLD`` bytes are left, the
  async pool's loop sends the rest, so a 1 GB download neither holds a serving thread nor stalls behind a
  handler blocking in that thread; a smaller rest is sent by the worker's loop as the client reads. The app's
  ``send`` returns once the last byte is written, then the connection serves its next request (keep-alive).
- Backpressure is the socket's: non-blocking ``sendfile``, then wait until writable; a client that takes nothing
  for ``--timeout-write-stall`` is cut off, as for any response.
- A file that shrinks while it is sent cannot fill the ``Content-Length`` already announced: the connection is
  closed (never a short body passed off as whole) and a warning names the file. Growth is ignored: exactly the
  size seen at open goes out. A file unlinked meanwhile is still read whole through the open descriptor.
- HEAD (and 204, 304) get the head only, with the file's length.
- Where ``sendfile`` cannot be used (TLS), the file is read in chunks and written through the SSLSocket, with
  the same split between the worker and the pool.
- A connection the pool serves (a stream's route, ``--mode async``) sends the file from the pool's loop, by
  ``sendfile`` once its SocketStream's buffer is empty.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import stat

from hybrid._speedups.cycle import ClientDisconnected
from hybrid._speedups.held import will_hold
from hybrid.connection import resolve, stall_tick, unsent_bytes
from hybrid.pathsend_small import HELD_DIGITS, HELD_FILE, SMALL_FILE, declared, read_small

logger = logging.getLogger("hybrid.error")

# What the kernel does not take at once of a file is sent by the async pool's loop when more than this is left,
# else by the worker's loop. The hop is dear, so a file the kernel takes at once never makes it: measured
# (Starlette FileResponse, wrk -c16, a loaded 2-core VM) sending every body from the pool instead cost 412 vs 309
# µs of server CPU per 64 KiB request, 809 vs 546 per 1 MiB one, and 1 MiB went at 370-396 req/s against 610-715.
POOL_THRESHOLD = 256 * 1024
# Read size where sendfile(2) cannot be used (TLS).
CHUNK = 256 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # (O_NONBLOCK: opening a FIFO must not hang)


class FileShrank(ClientDisconnected):
    """The file ended before the length announced in the head: the response cannot complete, and the
    connection closes (a ClientDisconnected: the app is not at fault and nothing more can be sent)."""


def _open(path) -> tuple[int, int]:
    """(fd, size) of the regular file at ``path``; raises a one-line error otherwise (the client gets a 500)."""
    if type(path) is not str:
        raise TypeError(f"ASGI: 'path' of http.response.pathsend must be a str, got {type(path).__name__}")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise RuntimeError(f"ASGI pathsend: cannot open {path!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RuntimeError(f"ASGI pathsend: {path!r} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _checked_length(headers, size: int, path: str) -> None:
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            if value.strip() != b"%d" % size:
                raise RuntimeError(f"ASGI pathsend: Content-Length {value.decode('latin-1')!r} but {path!r} "
                                   f"has {size} bytes")
        elif lower == b"transfer-encoding":
            raise RuntimeError("ASGI pathsend: a file is sent with Content-Length, not Transfer-Encoding")


async def send_path(cycle, message: dict) -> None:
    """RequestCycle.send for ``http.response.pathsend`` (see the module docstring)."""
    if not cycle.response_started:
        raise RuntimeError("ASGI: 'http.response.pathsend' sent before 'http.response.start'")
    if cycle.head_sent or cycle.held is not None or cycle.response_complete:
        raise RuntimeError("ASGI: 'http.response.pathsend' sent after a response body")
    path = message.get("path")
    status = cycle.status
    value = declared(cycle.headers)
    if (value and len(value) <= HELD_DIGITS and status != 204 and status != 304
            and cycle.request.method != b"HEAD"):
        conn = cycle.conn
        data = read_small(value, path, HELD_FILE if will_hold(conn) else SMALL_FILE)
        if data is not None:  # a small file: read whole, then head and body in one write (pathsend_small.py)
            out = _framed(cycle, conn, data)
            rest = conn.send_last(out)  # (held to the batch's or loop iteration's end, as a body is)
            if rest is not None:  # (a full send queue, or a pool connection's stream over its high-water mark)
                await cycle._finish_write(rest, out, len(data))
            conn.proto.send_body_elsewhere(len(data))
            _complete(cycle, conn)
            return
    fd, size = _open(path)
    try:
        if status != 204 and status != 304:
            if value is False:
                _checked_length(cycle.headers, size, path)
            elif value is not None and value != b"%d" % size:
                raise RuntimeError(f"ASGI pathsend: Content-Length {value.decode('latin-1')!r} but {path!r} "
                                   f"has {size} bytes")
        conn = cycle.conn
        proto = conn.proto
        head = proto.send_response(status, cycle.headers, size)
        cycle.head_sent = True
        body = 0 if status == 204 or status == 304 or cycle.request.method == b"HEAD" else size
        if conn.disconnected:
            raise ClientDisconnected("Client disconnected")
        cycle.wrote = True
        plain = type(conn.sock) is socket.socket
        in_pool = getattr(conn, "in_pool", False)
        rest = _send_head(conn, head, plain and not in_pool and body > 0)
        if rest is not None:  # (the kernel's queue is full: the common case never awaits here)
            await conn.finish_write(rest)
        if body and not plain:
            await _send_chunks(cycle, fd, body, path)
        elif body and in_pool:  # (the pool's loop already: sendfile here, once the stream's buffer is empty)
            await _flush_stream(conn)
            await _sendfile(cycle, conn.loop, conn.fd, fd, 0, body, path, conn.sock)
        elif body:
            # What the kernel takes now goes at once (a fast client: all of it, no hop); the rest of a large file
            # is sent by the pool, the rest of a small one on this thread's loop.
            offset = _sendfile_now(cycle, conn.fd, fd, 0, body, path)
            if body - offset > POOL_THRESHOLD:
                # (the job's own descriptors: a connection closed meanwhile cannot have its number reused under it)
                await _in_pool(cycle, _sendfile, cycle, conn.server.pool.loop, _Fd(os.dup(conn.fd)),
                               _Fd(os.dup(fd)), offset, body, path, None)
            elif offset < body:
                await _sendfile(cycle, conn.loop, conn.fd, fd, offset, body, path, conn.sock)
        proto.send_body_elsewhere(body)
    finally:
        os.close(fd)
    cycle.response_complete = True
    cycle.wake()
    if cycle.task is not None:
        conn.response_complete(cycle)  # (a pending task: the connection need not wait for its end)


def _complete(cycle, conn) -> None:
    cycle.response_complete = True
    cycle.wake()
    if cycle.task is not None:
        conn.response_complete(cycle)  # (a pending task: the connection need not wait for its end)


def _framed(cycle, conn, data: bytes) -> bytes:
    """A small file's head and body, joined (as an inline body below 64 KiB is)."""
    out = conn.proto.send_response(cycle.status, cycle.headers, len(data)) + data
    cycle.head_sent = True
    if conn.disconnected:
        raise ClientDisconnected("Client disconnected")
    cycle.wrote = True
    cycle.sent += len(data)
    return out


def _send_head(conn, head: bytes, more: bool):
    """Write the head without waiting; the part the kernel did not take, or None. A plain function, not a
    coroutine: a head the kernel takes at once (every small file) costs no coroutine of its own."""
    if not more:
        return conn.send_now(head)
    try:  # MSG_MORE: the head leaves in the same segment as the file's first bytes
        sent = conn.sock.send(head, socket.MSG_MORE)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError as exc:
        conn._lost()
        raise ClientDisconnected(f"Client disconnected: {exc}") from None
    return memoryview(head)[sent:] if sent < len(head) else None


async def _flush_stream(conn) -> None:
    """A pool connection writes through its SocketStream: what it still buffers (the head, behind a full kernel
    queue) goes before the file does. Bounded by --timeout-write-stall."""
    stream = conn.stream
    if not stream.write_buffer_size():
        return
    await conn.finish_write(True)  # (below the stream's high-water mark, or cut off as any stalled write)
    deadline = conn.loop.time() + conn.server.config.timeout_write_stall
    while stream.write_buffer_size():
        if conn.disconnected or stream.peer_gone or conn.loop.time() > deadline:
            conn.disconnected = True
            raise ClientDisconnected("Client stopped reading the response")
        await asyncio.sleep(0.005)


async def _in_pool(cycle, job, *args) -> None:
    """Have the async pool's loop run ``job(*args)`` (the rest of the file); this, the worker's task, waits
    without holding its thread. The worker's loop stops reading the socket meanwhile (a TLS connection's
    SSLSocket must not be used by two threads) and reads again after, if the app was waiting for bytes.

    The pool's task owns its descriptors (duplicates) and closes them however it ends; if this request is
    cancelled (shutdown), the pool's task is cancelled too and awaited before the cancellation goes on, so the
    connection is never closed under it."""
    conn = cycle.conn
    loop = conn.loop
    pool = conn.server.pool
    pool_loop = pool.loop
    done = loop.create_future()
    ended = loop.create_future()
    task = None
    reading = conn.reading
    if reading:
        conn._stop_reading()
    # (an app waiting only for http.disconnect is watched by the set, not the loop: Connection.want_read; the
    # set's report of an EOF must not start a read meanwhile, Connection._watch_for_app)
    conn.in_pool_job = True

    def start() -> None:
        nonlocal task
        task = pool_loop.create_task(job(*args))
        # Among the pool's closing tasks: a request cut short at --timeout-graceful-shutdown leaves its job to
        # the pool's drain, which gives it the cleanup budget, then cancels it (not left pending in a dead loop).
        pool.closing.add(task)
        task.add_done_callback(finished)

    def finished(job_task) -> None:  # (on the pool's loop; also when cancelled before its first step)
        pool.closing.discard(job_task)
        for fd in args:
            if type(fd) is _Fd:
                os.close(fd)
        loop.call_soon_threadsafe(_copy_outcome, job_task, done, ended)

    pool_loop.call_soon_threadsafe(start)
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        if not ended.done():  # (this request was cancelled, not the job: the pool's drain cancels jobs too)
            try:
                pool_loop.call_soon_threadsafe(lambda: task.cancel())  # (after start(): they run in order)
            except RuntimeError:  # the pool's loop is closed (the end of a shutdown): the job is gone with it
                raise asyncio.CancelledError from None
            await ended
        raise
    finally:
        conn.in_pool_job = False
    # (or the set reported it meanwhile, taking it out, while the app waits in receive: the loop reads it now)
    waiting = cycle.waiter is not None and not conn.registered
    if (reading or waiting) and not conn.disconnected and conn.sock is not None:
        conn.want_read()


class _Fd(int):
    """A descriptor the pool's job owns (closed when the job ends)."""


def _copy_outcome(job, done, ended) -> None:
    ended.set_result(None)
    if done.done():
        return
    if job.cancelled():
        done.cancel()
    elif job.exception() is not None:
        done.set_exception(job.exception())
    else:
        done.set_result(None)


def _sendfile_now(cycle, out: int, fd: int, offset: int, size: int, path: str) -> int:
    """One non-blocking sendfile(2) of the file from ``offset``; the new offset (the same when the kernel's
    send queue is full)."""
    conn = cycle.conn
    try:
        n = os.sendfile(out, fd, offset, size - offset)
    except (BlockingIOError, InterruptedError):
        return offset
    except OSError as exc:
        conn.disconnected = True
        raise ClientDisconnected(f"Client disconnected: {exc}") from None
    if n == 0:  # end of file before ``size``: it shrank
        conn.disconnected = True
        logger.warning("Closed the connection: %r shrank while it was sent (%d of %d bytes sent).",
                       path, offset, size)
        raise FileShrank(f"{path!r} shrank while it was sent")
    cycle.sent += n
    return offset + n


async def _sendfile(cycle, loop, out: int, fd: int, offset: int, size: int, path: str, sock) -> None:
    """Send the file from ``offset`` to ``size`` to socket ``out`` on ``loop``: the worker's (``sock`` is the
    connection's socket, ``out`` its fd), or the pool's for a large file (``out`` a duplicate the job owns; the
    worker's loop does not watch the socket meanwhile, its task awaits this)."""
    conn = cycle.conn
    stall = conn.server.config.timeout_write_stall
    tick = stall_tick(stall)
    progress = loop.time()
    queued = -1
    while offset < size:
        taken = _sendfile_now(cycle, out, fd, offset, size, path)
        if taken > offset:
            offset = taken
            progress = loop.time()
            queued = -1
            if offset == size:
                return
        # The kernel's send queue is full: wait until the socket is writable; --timeout-write-stall counts from
        # the last progress (bytes taken, or the queue shrinking), as in Connection.finish_write. The queue is
        # measured before the wait: a loop that was itself held up (a handler blocking the worker's thread)
        # must see the client's reading meanwhile as progress, not take the time for a stall.
        if queued < 0:
            queued = unsent_bytes(out)
        writable = loop.create_future()
        loop.add_writer(out, resolve, writable)
        try:
            async with asyncio.timeout(tick):
                await writable
            continue
        except TimeoutError:
            pass
        finally:
            if sock is None or conn.sock is sock:  # (closed meanwhile: the fd may be another connection's now)
                loop.remove_writer(out)
        progress, queued = _after_a_wait(conn, loop, out, queued, progress, stall)


def _after_a_wait(conn, loop, out: int, queued: int, progress: float, stall: float) -> tuple[float, int]:
    """A wait for the socket ran out: the client read meanwhile if the kernel's send queue shrank (progress now);
    if nothing moved for --timeout-write-stall, the connection is closed (ClientDisconnected). Returns (progress,
    the queue now)."""
    now = unsent_bytes(out)
    if 0 <= queued and now < queued:
        return loop.time(), now
    if loop.time() - progress >= stall:
        conn.disconnected = True
        logger.info("Closed a connection whose client read none of the response for %g s (--timeout-write-stall).",
                    stall)
        raise ClientDisconnected("Client stopped reading the response")
    return progress, now


async def _send_chunks(cycle, fd: int, size: int, path: str) -> None:
    """Where sendfile(2) cannot be used: read the file and write it through the connection's own path. On a
    worker's TLS connection, once the kernel stops taking bytes and more than POOL_THRESHOLD are left, the pool's
    loop writes the rest (_tls_rest)."""
    conn = cycle.conn
    in_worker = not getattr(conn, "in_pool", False)
    offset = 0
    while offset < size:
        data = _read(conn, fd, offset, size, path)
        offset += len(data)
        if conn.disconnected:
            raise ClientDisconnected("Client disconnected")
        rest = conn.send_now(data)
        cycle.sent += len(data)
        if rest is None:
            continue
        if in_worker and size - offset + len(rest) > POOL_THRESHOLD:
            cycle.sent -= len(rest)  # (counted again as the pool sends it)
            await _in_pool(cycle, _tls_rest, cycle, conn.server.pool.loop, conn.sock, _Fd(os.dup(fd)), offset,
                           size, path, bytes(rest))
            return
        await conn.finish_write(rest)


def _read(conn, fd: int, offset: int, size: int, path: str) -> bytes:
    data = os.pread(fd, min(CHUNK, size - offset), offset)
    if not data:
        conn.disconnected = True
        logger.warning("Closed the connection: %r shrank while it was sent (%d of %d bytes sent).",
                       path, offset, size)
        raise FileShrank(f"{path!r} shrank while it was sent")
    return data


async def _tls_rest(cycle, loop, sock, fd: int, offset: int, size: int, path: str, pending: bytes) -> None:
    """On the pool's loop: write ``pending`` (what the kernel did not take yet; OpenSSL wants the same bytes
    again), then the file from ``offset``, through the connection's SSLSocket (TLSConnection.finish_write's
    waits and --timeout-write-stall, on this loop)."""
    conn = cycle.conn
    out = sock.fileno()
    stall = conn.server.config.timeout_write_stall
    tick = stall_tick(stall)
    progress = loop.time()
    queued = unsent_bytes(out)
    view = memoryview(pending)
    while True:
        if not view:
            if offset == size:
                return
            data = _read(conn, fd, offset, size, path)
            offset += len(data)
            view = memoryview(data)
        try:
            n = sock.send(view)
        except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            add, remove = loop.add_writer, loop.remove_writer
        except ssl.SSLWantReadError:  # (a TLS 1.2 renegotiation) we must read first
            add, remove = loop.add_reader, loop.remove_reader
        except OSError as exc:
            conn.disconnected = True
            raise ClientDisconnected(f"Client disconnected: {exc}") from None
        else:
            view = view[n:]
            cycle.sent += n
            progress = loop.time()
            queued = unsent_bytes(out)
            continue
        ready = loop.create_future()
        add(out, resolve, ready)
        try:
            async with asyncio.timeout(tick):
                await ready
            continue
        except TimeoutError:
            pass
        finally:
            remove(out)  # (the worker waits for this job before it may close the socket)
        progress, queued = _after_a_wait(conn, loop, out, queued, progress, stall)
