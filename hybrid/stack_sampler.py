"""The stack sampler: reads where a blocked step is while it is still blocked.

The monitor (hybrid/_speedups/monitor.pyx, no GIL) flags a step when it takes over its thread's set and when a
step has held its loop longer than the report bound (a worker's, or the async pool's: a WATCHED slot); each flag
writes this thread's eventfd. The sampler then lists the flagged steps still running, reads every thread's
current frame at once (``sys._current_frames()``), keeps those whose step is still the flagged one, and looks
again every ``RESAMPLE`` seconds while any stays blocked, so a CPU-bound step is reported where it spends its
time. Nothing here runs per request: the thread sleeps in ``select`` until a flag.

The step's own thread, when the step ends, takes its sample (``take``) and records it with the step's duration
(hybrid/blocking_sites.py).
"""

from __future__ import annotations

import logging
import os
import select
import threading

from hybrid.stacks import app_stack, current_frames, describe

logger = logging.getLogger("hybrid.error")

# While a flagged step stays blocked, its stack is read again this often.
RESAMPLE = 0.25
# Distinct places kept per step (a CPU-bound step moves): the rest count with the last one.
PLACES_PER_STEP = 16


class Sample:
    """Where one flagged step was seen, each time it was looked at."""

    __slots__ = ("slot", "seq", "began", "places", "seen", "last")

    def __init__(self, slot: int, seq: int, began: float) -> None:
        self.slot = slot
        self.seq = seq
        self.began = began
        self.places: dict[str, list] = {}  # location -> [times seen, trace]
        self.seen = 0
        self.last = ""

    def add(self, stack) -> None:
        location, trace = describe(stack)
        self.seen += 1
        place = self.places.get(location)
        if place is None:
            if len(self.places) >= PLACES_PER_STEP:
                location = self.last
                place = self.places[location]
            else:
                place = self.places[location] = [0, trace]
        place[0] += 1
        place[1] = trace
        self.last = location

    def where(self) -> tuple[str, str]:
        """(location, trace) where the step was seen most often (the latest, between equals)."""
        best = self.last
        for location, (count, _trace) in self.places.items():
            if count > self.places[best][0]:
                best = location
        return best, self.places[best][1]

    def others(self) -> str:
        """The other places it was seen, for a step that moved: '; also at X (2 of 9 looks)'."""
        best, _ = self.where()
        rest = sorted(((c, loc) for loc, (c, _t) in self.places.items() if loc != best), reverse=True)[:3]
        return "".join(f"; also at {loc} ({c} of {self.seen} looks)" for c, loc in rest)


class StackSampler:
    def __init__(self, monitor, bound: float) -> None:
        self.monitor = monitor
        self.bound = bound
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.samples: dict[int, Sample] = {}  # thread ident -> its latest flagged step (one per thread: bounded)
        self._lock = threading.Lock()
        self._stopping = False
        self.looks = 0
        self.thread = threading.Thread(target=self._run, name="hybrid-stack-sampler", daemon=True)

    def start(self) -> None:
        self.monitor.set_sampler(self.fd, self.bound)
        self.thread.start()

    def stop(self) -> None:
        self._stopping = True
        os.eventfd_write(self.fd, 1)
        if self.thread.is_alive():
            self.thread.join(timeout=1)

    def _run(self) -> None:
        timeout = None
        while not self._stopping:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if ready:
                try:
                    os.eventfd_read(self.fd)
                except BlockingIOError:
                    pass
            if self._stopping:
                break
            try:
                timeout = RESAMPLE if self.capture() else None
            except Exception:  # never let a bad frame end the sampler
                logger.exception("The stack sampler failed; blocking locations are no longer captured.")
                return

    def capture(self) -> bool:
        """Look at every flagged step still running; False when there is none."""
        steps = self.monitor.flagged_steps()
        if not steps:
            return False
        frames = current_frames()  # (not sys._current_frames() itself: see stacks.current_frames)
        # A step that ended between the two lists is left out: the frame read may already be another step's.
        still = {(slot, seq) for slot, _ident, seq, _began in self.monitor.flagged_steps()}
        try:
            for slot, ident, seq, began in steps:
                if (slot, seq) not in still:
                    continue
                stack = app_stack(frames.get(ident))
                self.looks += 1
                with self._lock:
                    sample = self.samples.get(ident)
                    if sample is None or sample.seq != seq or sample.slot != slot:
                        sample = self.samples[ident] = Sample(slot, seq, began)
                    sample.add(stack)
        finally:
            del frames
        return True

    def in_progress(self) -> list[tuple[int, float, Sample]]:
        """(thread ident, began, sample) of the flagged steps still blocked now (SIGUSR1: a handler stuck for good
        is never recorded, since it never returns)."""
        current = {(slot, seq) for slot, _ident, seq, _began in self.monitor.flagged_steps()}
        with self._lock:
            return [(ident, s.began, s) for ident, s in self.samples.items() if (s.slot, s.seq) in current]

    def take(self, ident: int, *, seq: int | None = None, began: float | None = None) -> Sample | None:
        """The sample of the step of thread ``ident`` that just ended (named by the monitor's ``seq``, or by its
        start ``began``), or None if it ended before it could be read."""
        with self._lock:
            sample = self.samples.get(ident)
            if sample is None or (seq is not None and sample.seq != seq) or (
                    began is not None and sample.began != began):
                return None
            del self.samples[ident]
            return sample
