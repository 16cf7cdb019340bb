"""The main thread sleeps until it has something to do (hybrid/main_wait.py): it does not wake to poll, and a
signal still stops the server at once."""

import signal
import time

import pytest

from .support import Server

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.basic:app"


def main_thread_switches(pid: int) -> int:
    """Voluntary context switches of the main thread (its tid is the pid): one per sleep it wakes from."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def test_idle_main_thread_does_not_poll():
    # Polling every 50 ms took the GIL from the serving thread 20 times a second (about 40 switches in 2 s);
    # waiting for a signal with a 1 s safety timeout is 2 or 3.
    with Server(APP, "--host", "127.0.0.1", "--port", "0") as srv:
        time.sleep(0.5)  # (startup's last steps)
        before = main_thread_switches(srv.pid)
        time.sleep(2.0)
        woke = main_thread_switches(srv.pid) - before
        assert woke <= 8, f"the main thread woke {woke} times in 2 s while idle"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_wakes_the_main_thread_at_once(sig):
    with Server(APP, "--host", "127.0.0.1", "--port", "0") as srv:
        time.sleep(0.5)
        sent = time.monotonic()
        srv.signal(sig)
        assert srv.wait(10) == 0, srv.output
        began = srv.line_time("Shutting down")
        assert began is not None, srv.output
        # (the line's arrival includes the pipe to this process: well under the 1 s safety timeout)
        assert began - sent < 0.5, f"shutdown began {began - sent:.2f} s after the signal"
