"""Where a blocked thread is: its Python stack, read from another thread, reduced to the app's frames.

A thread blocked in a system call or a lock has released the GIL, so ``sys._current_frames()`` from another
thread sees its frames as they stand (a CPU-bound one is seen at its last switch). hybrid's own frames (the
serving loop around the app) and asyncio's are left out; of what remains, the innermost frame of the app itself
(not the standard library, not site-packages) is the *location*, and the trace shows it and the few frames it
called, down to the call in progress (for ``time.sleep`` or ``sock.recv``, a C function, the innermost line is
its call site, shown with its source text).
"""

from __future__ import annotations

import asyncio
import gc
import linecache
import os
import sys
import sysconfig

import hybrid

_HYBRID = os.path.dirname(os.path.abspath(hybrid.__file__)) + os.sep
_ASYNCIO = os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep
# Longest first: site-packages lies inside the standard library's directory in a virtualenv-less install.
_LIBRARY = tuple(sorted({os.path.abspath(p) + os.sep for p in (sysconfig.get_paths().get(k) for k in (
    "purelib", "platlib", "stdlib", "platstdlib")) if p}, key=len, reverse=True))
# Frames of one stack kept (innermost first): enough for an app under a framework and a driver.
STACK_LIMIT = 48
# Frames shown in a trace: the location, the innermost ones it called, and (room left) the ones that called it.
TRACE_FRAMES = 5

Frame = tuple[str, int, str]  # (file, line, function)


def current_frames() -> dict:
    """``sys._current_frames()`` with the collector off while it runs. CPython before 3.11.9 / 3.12.3 holds its
    thread-list lock there while making frame objects; a collection they trigger can run finalizers, which can
    hand the GIL to a thread that starts or ends a thread and so waits for that lock holding the GIL: a deadlock
    of the whole process (CPython gh-106883; seen here as a server frozen while a spare thread started during a
    takeover). The fix CPython made: no collection during the call. (Left off if the app turned it off.)"""
    if not gc.isenabled():
        return sys._current_frames()
    gc.disable()
    try:
        return sys._current_frames()
    finally:
        gc.enable()


def app_stack(frame) -> tuple[Frame, ...]:
    """The frames of the app's code around ``frame`` (innermost first), up to the first of hybrid's own."""
    frames = []
    while frame is not None and len(frames) < STACK_LIMIT:
        code = frame.f_code
        path = code.co_filename
        if path.startswith(_HYBRID):
            break  # the serving loop that called the app
        if not path.startswith(_ASYNCIO):
            frames.append((path, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return tuple(frames)


def _library(path: str) -> bool:
    return path.startswith(_LIBRARY) or path.startswith("<")


def display_path(path: str) -> str:
    """A path as the person fixing the app reads it: relative to the working directory, or to the library
    directory it is in (``requests/sessions.py``, ``socket.py``)."""
    for prefix in _LIBRARY:
        if path.startswith(prefix):
            return path[len(prefix):]
    cwd = os.getcwd() + os.sep
    return path[len(cwd):] if path.startswith(cwd) else path


def _where(frame: Frame) -> str:
    path, line, func = frame
    return f"{display_path(path)}:{line} in {func}"


def location_index(stack: tuple[Frame, ...]) -> int:
    """Index of the innermost frame of the app itself; the innermost frame if all are library code."""
    for i, (path, _line, _func) in enumerate(stack):
        if not _library(path):
            return i
    return 0


def describe(stack: tuple[Frame, ...]) -> tuple[str, str]:
    """(location, trace) of a stack (innermost first). The trace reads outward to inward, as a call does:
    ``app/db.py:42 in fetch -> requests/api.py:73 in get -> ... -> http/client.py:286 in _read_status ->
    socket.py:706 in readinto: return self._sock.recv_into(b)`` (the source text of the innermost line ends it)."""
    if not stack:
        return "unknown", "unknown (no Python frame of the app)"
    at = location_index(stack)
    location = _where(stack[at])
    inner = list(stack[at::-1])  # the location and what it called, outward to inward
    if len(inner) > TRACE_FRAMES:
        inner = inner[:2] + [None] + inner[-(TRACE_FRAMES - 3):]  # (the library call the app made, and the end)
    # Room left: the app's frames that led there (a call a few frames deep in the app's own helpers).
    outer = list(stack[at + 1:at + 1 + max(0, TRACE_FRAMES - len(inner))])[::-1]
    parts = ["..." if f is None else _where(f) for f in outer + inner]
    path, line, _func = stack[0]
    source = linecache.getline(path, line).strip()
    trace = " -> ".join(parts) + (f": {source}" if source else "")
    return location, trace
