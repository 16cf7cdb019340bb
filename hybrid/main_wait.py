"""How the main thread waits between its chores: asleep until a signal, the supervisor's pipe or a chore's time.

It used to poll every 50 ms. Each wake-up takes the GIL from the serving thread (a forced GIL switch, several
futex calls and context switches: measured, about half of the futex calls of a loaded process, docs/performance.md),
20 times a second for nothing. Now a signal wakes it through ``signal.set_wakeup_fd`` (the C-level handler
writes a byte; the Python handler has run by the time ``select`` returns), the supervisor's pipe through its
fd, another thread's ``request_stop`` through ``wake()``.
"""

from __future__ import annotations

import select
import signal
import socket
import threading


class MainWait:
    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old_wakeup: int | None = None
        if threading.current_thread() is threading.main_thread():
            self._old_wakeup = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)

    @property
    def signals_wake(self) -> bool:
        """False off the main thread (an in-process server in tests): signals cannot reach this wait."""
        return self._old_wakeup is not None

    def wait(self, timeout: float, fds: tuple = ()) -> None:
        """Until a signal, ``wake()``, a readable fd of ``fds`` or ``timeout`` seconds, whichever is first."""
        select.select([self._r, *fds], [], [], timeout)
        try:
            while self._r.recv(512):
                pass
        except BlockingIOError:
            pass

    def wake(self) -> None:
        """From any thread."""
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):  # full (a wake-up is pending anyway) or closed (the wait is over)
            pass

    def close(self) -> None:
        if self._old_wakeup is not None:
            signal.set_wakeup_fd(self._old_wakeup)
            self._old_wakeup = None
        self._r.close()
        self._w.close()
