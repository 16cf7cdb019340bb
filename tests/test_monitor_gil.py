"""The monitor's ``leave()`` runs after every step of app code: it must not let go of the GIL when its lock is
free. It did (``with nogil`` around the lock), and with FastAPI's ``def`` endpoints an anyio worker is always
waiting for the GIL: on the serving core each ``leave()`` woke it and lost the CPU to it, ~2 thread switches per
request more than uvicorn (issue 22; docs/performance.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# One CPU, as a server pinned to its core: a thread woken by a GIL release takes the CPU from the thread that woke
# it. The switch interval is made huge, so a thread waiting for the GIL never forces a switch: it gets the GIL only
# if the main thread lets go of it. The waiter sleeps 50 ms (GIL released), then waits for the GIL while the main
# thread runs 0.3 s of enter()/leave() steps; if a leave() released the GIL, the waiter takes it and says so.
CHILD = r"""
import os, sys, threading, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from hybrid._speedups.monitor import Monitor

monitor = Monitor(2, 0.001, 0.0005)
slot = monitor.add_slot(-1, 7)
ran = []

def waiter():
    time.sleep(0.05)
    ran.append(time.monotonic())

sys.setswitchinterval(1000.0)
t = threading.Thread(target=waiter)
t.start()
began = time.monotonic()
steps = 0
while time.monotonic() - began < 0.3 and steps < 10_000_000:
    monitor.enter(slot, -1)
    monitor.leave(slot)
    steps += 1
during = len(ran)  # (read before this thread lets go of the GIL for anything)
ended = time.monotonic()
t.join(10)
sys.setswitchinterval(0.005)
print(during, steps, round((ran[0] - began) * 1000, 1) if ran else -1, round((ended - began) * 1000, 1))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity (Linux)")
def test_leaving_a_step_does_not_hand_the_gil_to_a_waiting_thread():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr
    during, steps, waiter_ran_ms, loop_ms = proc.stdout.split()
    assert int(steps) > 1000, proc.stdout  # (the loop really ran steps)
    assert int(during) == 0, (f"a thread waiting for the GIL ran {waiter_ran_ms} ms into {loop_ms} ms of "
                              f"enter()/leave() steps ({steps} steps): leave() released the GIL")
    assert float(waiter_ran_ms) >= float(loop_ms), proc.stdout  # it ran once the loop let go, not before
