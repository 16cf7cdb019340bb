"""The stack sampler reads other threads' frames with the collector off (CPython gh-106883).

Before CPython 3.11.9 / 3.12.3, ``sys._current_frames()`` holds the interpreter's thread-list lock while it makes
frame objects; a collection started there can run finalizers that hand the GIL to a thread which then waits for
that lock while holding the GIL (starting or ending a thread does): the whole process freezes. It froze a CI run
(``test_isolation_with_a_busy_neighbour``: a takeover started a spare thread while the sampler read a blocked
handler's stack; py-spy showed the spare starter waiting for the lock inside ``start_new_thread``). The race is
too rare to provoke on demand over a socket (1 in about 100 server runs under load here), so this checks the
guard itself: every read the sampler makes runs with the collector off, and leaves it as it found it."""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from hybrid import stacks


@pytest.fixture
def watched(monkeypatch):
    seen = []
    real = sys._current_frames

    def spy():
        seen.append(gc.isenabled())
        return real()

    monkeypatch.setattr(sys, "_current_frames", spy)
    return seen


def test_frames_are_read_with_the_collector_off_and_it_is_back_on_after(watched):
    assert gc.isenabled()
    frames = stacks.current_frames()
    assert watched == [False], "sys._current_frames() ran with the collector on"
    assert gc.isenabled()
    assert threading.get_ident() in frames


def test_a_collector_the_app_turned_off_stays_off(watched):
    gc.disable()
    try:
        stacks.current_frames()
        assert watched == [False] and not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_is_back_on_when_the_read_fails(monkeypatch):
    def boom():
        raise RuntimeError("no frames")

    monkeypatch.setattr(sys, "_current_frames", boom)
    with pytest.raises(RuntimeError):
        stacks.current_frames()
    assert gc.isenabled()

