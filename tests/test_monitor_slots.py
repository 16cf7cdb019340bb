"""The monitor's slot table is C memory in a module built without bounds checks (issue 20, item 9): a retired
spare holds slot -1 and the server's health check and metrics asked ``owned_set(-1)``, which read the heap before
the table as a Slot. Every slot argument is checked now; -1 (no slot) owns no set."""

from __future__ import annotations

import pytest
from hybrid._speedups.monitor import Monitor


def test_a_thread_without_a_slot_owns_no_set():
    monitor = Monitor(2, 0.001, 0.0005)
    slot = monitor.add_slot(-1, 7)  # (owns "epoll fd 7": any number, nothing is polled here)
    assert monitor.owned_set(slot) == 7
    assert monitor.owned_set(-1) == -1


@pytest.mark.parametrize("slot", [-2, 2, 1 << 20])
@pytest.mark.parametrize("call", ["enter", "leave", "owned_set", "give", "retire", "remove_slot"])
def test_every_slot_argument_outside_the_table_is_refused(call, slot):
    monitor = Monitor(2, 0.001, 0.0005)
    args = {"enter": (slot, -1), "give": (slot, -1)}.get(call, (slot,))
    with pytest.raises(IndexError, match=f"monitor slot {slot} out of range 0..1"):
        getattr(monitor, call)(*args)


def test_the_watched_loop_slot_is_no_thread_and_an_ordinary_step_leaves_with_no_flags():
    """The async pool's WATCHED slot (docs/blocking.md) is never counted as a thread nor given a set; a step the
    monitor did not flag leaves with 0, as before."""
    monitor = Monitor(3, 0.001, 0.0005)
    slot = monitor.add_slot(-1, 7)
    watch = monitor.add_watch()
    assert watch == 2 and monitor.thread_count() == 1 and monitor.spare_count() == 0
    assert monitor.step_clock(watch) != 0
    monitor.enter(slot, -1)
    assert monitor.leave(slot) == 0
    assert monitor.flagged_steps() == []
