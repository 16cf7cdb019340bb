"""Starting a server process for a measurement: a free loopback port, waiting until it listens, stopping it.

Shared by bench/servers.py, bench/process_cost.py and bench/callgrind_tls.py (a server under valgrind takes
minutes to import its app, so the caller names the bound).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now (the kernel's choice; the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, interval: float = 0.2) -> None:
    """Return once a TCP connect to ``port`` succeeds; raise RuntimeError if ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(interval)
    raise RuntimeError(f"the server did not listen within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGINT (a graceful stop: callgrind writes its counts at exit), then SIGKILL if it outlives ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()
