"""A small file sent by ``http.response.pathsend``: read whole, then its head and body leave in one write.

hybrid/pathsend.py sends a file with ``sendfile(2)``: open, fstat, the head (``MSG_MORE``), sendfile, close:
five system calls. For a file of at most ``SMALL_FILE`` bytes whose length the app declared (Starlette's
``FileResponse`` always does) this does four: open, one ``pread`` of the declared length plus one byte, close,
and one ``send`` of head and body joined, as an inline body goes (hybrid/_speedups/cycle.pyx).

The read is the check: the whole body is in memory before a byte is written, so a file that shrank or grew
since the app took its size (the extra byte asked for shows growth) is a 500 with the message pathsend.py's
fstat check gives, never a short body passed off as whole, and nothing can shrink mid-send. There is no fstat on
the way: what counts is what a read finds, so a directory or a FIFO fails its read ("not a regular file"); a
special file that reads back exactly the declared length is sent as read.

Why 8 KiB: the copies (page cache to Python, then into the socket) cost more than the system call they save as
the file grows; 8 KiB is where they break even. ``python -m bench.small_file_cost`` on a loaded 2-core VM of the
kind we run on (CPU per file sent over loopback, median of 5 x 3,000): 2 KiB 16.3 µs against sendfile's 19.1,
4 KiB 17.6 against 19.4, 8 KiB 19.1 against 18.9, 16 KiB 23.7 against 20.0, 64 KiB 55.5 against 28.1. Larger
files keep ``sendfile``, except one of at most ``HELD_FILE`` (16 KiB) whose response will be held
(``held.will_hold``: its write waits for the end of the batch or loop iteration, hybrid/held_write.py): held,
the read and copy cost less than sendfile's calls sent at once (Starlette's 16 KiB ``FileResponse``, pinned, CPU
per request: docs/performance.md, "Held responses outside a batch").
"""

from __future__ import annotations

import errno
import os
import stat

SMALL_FILE = 8 * 1024
HELD_FILE = 16 * 1024  # (the limit when the response will be held)
HELD_DIGITS = len(str(HELD_FILE))  # (a longer Content-Length is not a small file: no call to find that out)
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # (O_NONBLOCK: opening a FIFO must not hang)
_NOT_A_FILE = (errno.EISDIR, errno.ESPIPE, errno.EINVAL)  # a directory; a FIFO or socket; a device without pread


def declared(headers):
    """The app's Content-Length as sent (stripped) when it sent exactly one; None when none; False when the
    general check must decide (several, or a Transfer-Encoding). One pass, shared with pathsend.py's check."""
    value = None
    for name, field in headers:
        lower = name.lower()
        if lower == b"content-length":
            if value is not None:
                return False
            value = field.strip()
        elif lower == b"transfer-encoding":
            return False
    return value


def read_small(value: bytes, path, limit: int = SMALL_FILE) -> bytes | None:
    """The whole file at ``path`` when ``value`` (the app's one Content-Length) is at most ``limit`` and the
    file has exactly that many bytes; a one-line RuntimeError when it has not (or cannot be read); None when it
    is not a small file (larger, not a plain number): pathsend.py's general path then answers, with its checks."""
    if not value.isdigit() or type(path) is not str:
        return None
    size = int(value)
    if size > limit:
        return None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise RuntimeError(f"ASGI pathsend: cannot open {path!r}: {exc.strerror}") from None
    try:
        try:
            data = os.pread(fd, size + 1, 0)  # (a regular file's read is short only at its end)
        except OSError as exc:
            if exc.errno in _NOT_A_FILE:
                raise RuntimeError(f"ASGI pathsend: {path!r} is not a regular file") from None
            raise RuntimeError(f"ASGI pathsend: cannot read {path!r}: {exc.strerror}") from None
        if len(data) != size or b"%d" % size != value:  # (the latter: "01000" is not the file's length)
            _mismatch(fd, value, path)
    finally:
        os.close(fd)
    return data


def _mismatch(fd: int, value: bytes, path: str) -> None:
    """The error for a file that is not the declared length: its size now, as pathsend.py's check says it."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise RuntimeError(f"ASGI pathsend: {path!r} is not a regular file")
    raise RuntimeError(f"ASGI pathsend: Content-Length {value.decode('latin-1')!r} but {path!r} "
                       f"has {st.st_size} bytes")
