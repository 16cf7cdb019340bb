# cython: language_level=3
"""The takeover monitor: hands the epoll set of a thread stuck in app code to a spare thread.

Every serving thread has a slot. A thread marks ``enter()`` before it runs a step of app code and ``leave()``
after it. The monitor thread runs without the GIL (a handler that holds the GIL must not starve it): every tick
it reads the slots and, for a thread that has been inside app code longer than the threshold, moves that thread's
epoll set to a spare slot and wakes the spare through its eventfd.

Two speeds, because a sub-millisecond timer is not free: it wakes a thread on the serving core thousands of times
a second (measured: 17% of the request rate on a VM where context switches are dear), and ordinary preemption on
a busy machine pushes a plain step past 1 ms, so a fast monitor takes over from threads that were never blocked.
While nothing has blocked for ``HOT_SECONDS``, the monitor ticks every ``SLOW_TICK`` and takes over only from a
thread that has been in one step for longer than that tick: ~100 wake-ups a second, and no takeover under plain
load. The first takeover (a real blocking handler: 10-20 ms to notice) switches it to the fast tick and the
``--blocking-threshold``, so a burst of blocking handlers is handled as before. The connection being served is removed from
the set first, so the new owner never reads from it; the stuck thread puts it back when its response is done.

A step that overruns the threshold is not always blocked: on a busy machine its thread may just be waiting for a
CPU. Before a takeover the monitor asks the kernel about the stuck thread (``/proc/thread-self/task/TID/stat`` and
``schedstat``, read only for a thread already past the threshold): sleeping (``S``/``D``: a blocking call, a lock)
is blocked; running or runnable counts only once the thread has spent the threshold on a CPU since the monitor
first saw the step. So preemption by a neighbour never moves connections, while ``time.sleep``, blocking I/O and
CPU-bound handlers still do. A thread waiting for the GIL sleeps in futex(2) as a blocked one does, but a spare
would wait for the GIL just the same: ``/proc/.../syscall`` names the futex, and the GIL's is learned once per
process (``gil_futex()``). Such a step is not blocked, and its own time restarts from the last time it was seen
waiting.

While fast, a step asleep in a blocking call while its set has ready connections (``epoll_wait`` with a zero
timeout on the set: no GIL needed) is taken over at ``URGENT_SHARE`` of the threshold, and the monitor naps only
until the next mark of a step in progress: in a burst of blocking handlers (one takeover each) every takeover
waited the whole threshold plus up to a tick, while the requests behind it waited too.

A garbage collection is not a blocked handler either. CPython collects in whichever thread allocates, holding the
GIL throughout (a full collection of a framework's heap takes 25-40 ms), so the step it lands in overruns the
threshold on a CPU, and every other thread, a spare included, waits for it: a takeover cannot help. The monitor
hooks ``gc.callbacks``: while a collection runs it decides nothing, and when it ends every step in progress is
credited with its duration (``entered_at`` moves forward), so only the app's own time counts.

``leave()`` and the takeover decision share one mutex, so a thread that leaves app code either keeps its set or
learns (from ``leave()``'s result) that it lost it: never both, never neither.

Where did it block (docs/blocking.md): with a stack sampler attached (``set_sampler``), the monitor also *flags* a
step it takes over, and any step older than the report bound (100 ms) in any slot, the async pool's ``WATCHED``
one included (its steps mark themselves, ``step_clock``); each flag writes the sampler's eventfd once, and the
sampler reads the stack while the step still blocks. ``leave()`` then returns ``LEFT_FLAGGED`` so the thread
records the step; an ordinary step pays one test for this.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free, strtoull
from libc.string cimport strncmp, strrchr
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, nanosleep, timespec
from posix.unistd cimport close, pread, write

import os
import threading


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t*, void*)
    int pthread_mutex_destroy(pthread_mutex_t*)
    int pthread_mutex_lock(pthread_mutex_t*)
    int pthread_mutex_trylock(pthread_mutex_t*)
    int pthread_mutex_unlock(pthread_mutex_t*)


cdef extern from "<sys/epoll.h>" nogil:
    int EPOLL_CTL_DEL
    struct epoll_event:
        pass
    int epoll_ctl(int epfd, int op, int fd, void* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)


# Slot states
cdef enum:
    FREE = 0      # no thread
    ACTIVE = 1    # owns an epoll set
    SPARE = 2     # a thread waiting to be given a set
    LOST = 3      # was stuck in app code and lost its set; becomes a spare once it leaves
    WATCHED = 4   # a loop that is no SyncWorker (the async pool): only its long steps are reported, never moved


# What leave() returns (bits; 0 for the ordinary step)
cdef enum:
    C_LEFT_LOST = 1     # the thread lost its set to a takeover during the step
    C_LEFT_FLAGGED = 2  # the step was flagged as blocking (taken over, or past the report bound): see left_step()
LEFT_LOST = C_LEFT_LOST
LEFT_FLAGGED = C_LEFT_FLAGGED


cdef struct Slot:
    double entered_at      # monotonic seconds when the current app step began; 0 outside app code
    int epoll_fd           # the set this slot owns, -1 for none
    int current_fd         # the connection whose app step is running, -1 for none
    int wake_fd            # eventfd the thread's loop watches
    int state
    int stat_fd            # /proc/self/task/TID/stat of the slot's thread (-1: not available)
    int sched_fd           # /proc/self/task/TID/schedstat
    int syscall_fd         # /proc/self/task/TID/syscall (-1: not available): is a sleeping thread waiting for the GIL?
    double seen_entered    # the step (its entered_at) the monitor last sampled
    unsigned long long cpu_ns_seen  # the thread's CPU time when the monitor first saw that step
    double gil_step        # the step (its entered_at) last seen waiting for the GIL...
    double gil_seen        # ...and when: that step's own time counts from then
    unsigned long ident    # threading.get_ident() of the slot's thread (sys._current_frames() keys)
    int flagged            # the current step was reported to the stack sampler (taken over, or long)
    double flagged_at      # (WATCHED slots, which leave without the mutex) the entered_at of the flagged step
    long flag_seq          # counts flagged steps: names one for the sampler
    double left_entered    # the flagged step that just left: when it began (after any GC credit)...
    long left_seq          # ...and its flag_seq
    int left_flags         # what leave() last returned, when not 0


# Slow mode: tick, and how long a step must have run before it counts as blocked. Fast mode lasts this long after
# the last takeover.
cdef double SLOW_TICK = 0.010
cdef double HOT_SECONDS = 1.0
# While fast, a step asleep in a blocking call while others wait in its set is taken over at this share of the
# threshold (0.25 ms of the default 1 ms): every takeover in a burst of blocking handlers waits for it.
cdef double URGENT_SHARE = 0.25
# The shortest nap between two looks.
cdef double MIN_NAP = 0.00005


include "monitor_proc.pxi"


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline void _nap(double seconds) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = <long>seconds
    ts.tv_nsec = <long>((seconds - ts.tv_sec) * 1e9)
    nanosleep(&ts, NULL)


cdef class Monitor:
    # Every method taking a slot checks it (_check): the module is built without bounds checks, and a thread
    # without a slot holds -1 (a retired spare, a thread not registered yet), which read the heap before the
    # table as a Slot (issue 20, item 9).
    cdef Slot* _slots
    cdef int _size
    cdef double _threshold
    cdef double _tick
    # Never held across a Python allocation: a collection can start at any allocation of a container, and its
    # gc.callbacks hook (gc_callback) takes this lock, so a thread that allocated under it waited for itself,
    # and then every leave(), takeover and spare start waited forever (tests/test_monitor_gc.py). Python values
    # are made before taking it or after letting it go.
    cdef pthread_mutex_t _lock
    cdef bint _stopping
    cdef readonly long takeovers
    cdef readonly long wakeups
    cdef double _last_takeover
    cdef double _gc_started
    cdef bint _collecting
    cdef readonly long gc_pauses   # collections that ran while a thread was in a step of app code
    cdef int _sampler_fd           # eventfd of the stack sampler (-1: none): see set_sampler
    cdef double _report_bound

    def __cinit__(self, int size, double threshold, double tick):
        if size <= 0 or threshold <= 0 or tick <= 0:
            raise ValueError("Monitor size, threshold and tick must be positive")
        self._slots = <Slot*>calloc(size, sizeof(Slot))
        if self._slots == NULL:
            raise MemoryError()
        self._size = size
        self._threshold = threshold
        self._tick = tick
        self._sampler_fd = -1
        self._report_bound = 1e9
        pthread_mutex_init(&self._lock, NULL)
        for i in range(size):
            self._slots[i].epoll_fd = -1
            self._slots[i].current_fd = -1
            self._slots[i].wake_fd = -1
            self._slots[i].stat_fd = -1
            self._slots[i].sched_fd = -1
            self._slots[i].syscall_fd = -1

    def __dealloc__(self):
        if self._slots != NULL:
            for i in range(self._size):
                self._close_proc(i)
            free(self._slots)
        pthread_mutex_destroy(&self._lock)

    def add_slot(self, int wake_fd, int epoll_fd=-1):
        """Register the calling thread; with ``epoll_fd`` it starts owning that set, else it starts as a spare."""
        cdef int i
        cdef int stat_fd = -1, sched_fd = -1, syscall_fd = -1, found = -1
        cdef unsigned long ident = threading.get_ident()
        task = f"/proc/self/task/{threading.get_native_id()}"
        try:
            stat_fd = os.open(task + "/stat", os.O_RDONLY | os.O_CLOEXEC)
            sched_fd = os.open(task + "/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no procfs, or no schedstat: decide on wall time alone
            if stat_fd >= 0:
                os.close(stat_fd)
            stat_fd = sched_fd = -1
        if stat_fd >= 0 and _gil_addr:
            try:
                syscall_fd = os.open(task + "/syscall", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # (a kernel without CONFIG_HAVE_ARCH_TRACEHOOK) a GIL wait then counts as sleeping
                syscall_fd = -1
        with nogil:
            pthread_mutex_lock(&self._lock)
            for i in range(self._size):
                if self._slots[i].state == FREE:
                    self._slots[i].wake_fd = wake_fd
                    self._slots[i].epoll_fd = epoll_fd
                    self._slots[i].entered_at = 0
                    self._slots[i].current_fd = -1
                    self._slots[i].state = ACTIVE if epoll_fd >= 0 else SPARE
                    self._slots[i].stat_fd = stat_fd
                    self._slots[i].sched_fd = sched_fd
                    self._slots[i].syscall_fd = syscall_fd
                    self._slots[i].seen_entered = 0
                    self._slots[i].ident = ident
                    self._slots[i].flagged = 0
                    found = i
                    break
            pthread_mutex_unlock(&self._lock)
        if found < 0:
            if stat_fd >= 0:
                close(stat_fd)
                close(sched_fd)
            if syscall_fd >= 0:
                close(syscall_fd)
        return found

    cdef inline int _check(self, int slot) except -1:
        if <unsigned int>slot >= <unsigned int>self._size:  # (negative slots wrap to huge: one comparison)
            raise IndexError(f"monitor slot {slot} out of range 0..{self._size - 1}")
        return 0

    def remove_slot(self, int slot):
        """The thread exits (at shutdown: a spare that retires frees its slot through ``retire()``)."""
        self._check(slot)
        with nogil:
            pthread_mutex_lock(&self._lock)
        self._slots[slot].state = FREE
        self._slots[slot].epoll_fd = -1
        self._slots[slot].wake_fd = -1
        self._close_proc(slot)
        pthread_mutex_unlock(&self._lock)

    cdef void _close_proc(self, int slot) noexcept nogil:
        if self._slots[slot].stat_fd >= 0:
            close(self._slots[slot].stat_fd)
            close(self._slots[slot].sched_fd)
        if self._slots[slot].syscall_fd >= 0:
            close(self._slots[slot].syscall_fd)
        self._slots[slot].stat_fd = -1
        self._slots[slot].sched_fd = -1
        self._slots[slot].syscall_fd = -1

    cpdef enter(self, int slot, int fd):
        """The thread in ``slot`` starts a step of app code for connection ``fd`` (-1 if not inline)."""
        self._check(slot)
        self._slots[slot].current_fd = fd
        self._slots[slot].entered_at = _now()

    cpdef int leave(self, int slot) except -1:
        """The step is over. Returns 0 for an ordinary step, else bits: ``LEFT_LOST`` if the thread lost its epoll
        set meanwhile (it is now a spare), ``LEFT_FLAGGED`` if the step was reported to the stack sampler
        (``left_step()`` names it)."""
        cdef int left = 0
        cdef Slot* s
        self._check(slot)
        s = &self._slots[slot]
        # Taken without letting go of the GIL when it is free (nearly always: the monitor holds it for a tick's
        # look, microseconds, ~100 times a second). Releasing the GIL here, once per step of app code, handed
        # it to any thread waiting for it: with FastAPI's `def` endpoints that is an anyio worker, woken by the
        # step that queued its job; on a busy core it took the GIL and the CPU (a futex wake-up, a preemption)
        # at every leave, ~2 thread switches per request. Waiting for the lock still releases the GIL: a Python
        # thread holding it (add_slot, flagged_steps) allocates, and a collection there can switch threads.
        if pthread_mutex_trylock(&self._lock) != 0:
            with nogil:
                pthread_mutex_lock(&self._lock)
        if s.flagged:  # (rare: a blocking step; the ordinary one pays this one test)
            s.flagged = 0
            s.left_entered = s.entered_at
            s.left_seq = s.flag_seq
            left = s.left_flags = C_LEFT_FLAGGED
        s.entered_at = 0
        s.current_fd = -1
        if s.state == LOST:
            s.state = SPARE
            left |= C_LEFT_LOST
            s.left_flags = left
        pthread_mutex_unlock(&self._lock)
        return left

    def left_step(self, int slot):
        """(what leave() returned, began, seq) for the step that just left ``slot``, after leave() returned
        nonzero; began and seq name the flagged step (``LEFT_FLAGGED``)."""
        self._check(slot)
        return self._slots[slot].left_flags, self._slots[slot].left_entered, self._slots[slot].left_seq

    def add_watch(self):
        """Register the calling thread's loop (the async pool) to be watched only: a step of it older than the
        report bound is flagged for the stack sampler. Returns the slot, or -1 if the table is full."""
        cdef int i, found = -1
        cdef unsigned long ident = threading.get_ident()
        with nogil:
            pthread_mutex_lock(&self._lock)
            for i in range(self._size - 1, -1, -1):
                if self._slots[i].state == FREE:
                    self._slots[i].state = WATCHED
                    self._slots[i].entered_at = 0
                    self._slots[i].flagged_at = 0
                    self._slots[i].epoll_fd = -1
                    self._slots[i].ident = ident
                    found = i
                    break
            pthread_mutex_unlock(&self._lock)
        return found

    def step_clock(self, int slot):
        """The address of ``slot``'s step start, for a compiled loop that marks its steps without a call
        (steps.pyx: the started time, 0 between steps)."""
        self._check(slot)
        return <size_t>&self._slots[slot].entered_at

    def set_sampler(self, int fd, double bound):
        """Steps to capture: the monitor writes to eventfd ``fd`` once per step that it takes over or that has
        run longer than ``bound`` seconds; ``flagged_steps()`` lists them."""
        self._sampler_fd = fd
        self._report_bound = bound

    def flagged_steps(self):
        """[(slot, thread ident, seq, began)] of the flagged steps still in progress."""
        cdef int i, n = 0
        cdef Slot* s
        # Copied out under the lock, made into Python tuples after it (see _lock: no allocation under it).
        cdef Slot* found = <Slot*>calloc(self._size, sizeof(Slot))
        cdef int* slots = <int*>calloc(self._size, sizeof(int))
        if found == NULL or slots == NULL:
            free(found)
            free(slots)
            raise MemoryError()
        try:
            with nogil:
                pthread_mutex_lock(&self._lock)
                for i in range(self._size):
                    s = &self._slots[i]
                    if s.entered_at == 0 or s.state == FREE:
                        continue
                    if s.flagged or (s.state == WATCHED and s.flagged_at == s.entered_at):
                        found[n] = s[0]
                        slots[n] = i
                        n += 1
                pthread_mutex_unlock(&self._lock)
            return [(slots[i], found[i].ident, found[i].flag_seq, found[i].entered_at) for i in range(n)]
        finally:
            free(found)
            free(slots)

    cdef void _flag(self, Slot* s, double began) noexcept nogil:
        """Under the lock: mark the step in ``s`` (that began at ``began``) for the sampler and wake it (once per
        step). A WATCHED loop marks its steps without the lock: if a new one began meanwhile, this flag names none."""
        cdef uint64_t one = 1
        s.flag_seq += 1
        if s.state == WATCHED:
            s.flagged_at = began
        else:
            s.flagged = 1
        if self._sampler_fd >= 0:
            write(self._sampler_fd, &one, sizeof(one))

    cdef void _flag_long_steps(self, double now) noexcept nogil:
        """Flag every step older than the report bound not flagged yet, in any slot (a thread that lost its set
        still runs its loop's other requests; the pool's loop is WATCHED)."""
        cdef int i
        cdef Slot* s
        cdef double began
        pthread_mutex_lock(&self._lock)
        for i in range(self._size):
            s = &self._slots[i]
            began = s.entered_at
            if began == 0 or s.state == FREE or now - began <= self._report_bound:
                continue
            if s.state == WATCHED:
                if s.flagged_at != began:
                    self._flag(s, began)
            elif not s.flagged:
                self._flag(s, began)
        pthread_mutex_unlock(&self._lock)

    def retire(self, int slot):
        """Free ``slot`` if it is an idle spare and another spare remains; True if it was freed.

        Decided under the lock, so the monitor can never hand a set to a thread that is leaving.
        """
        cdef int i, spares = 0
        cdef bint ok
        self._check(slot)
        with nogil:
            pthread_mutex_lock(&self._lock)
        for i in range(self._size):
            if self._slots[i].state == SPARE:
                spares += 1
        ok = self._slots[slot].state == SPARE and self._slots[slot].entered_at == 0 and spares > 1
        if ok:
            self._slots[slot].state = FREE
            self._slots[slot].wake_fd = -1
            self._close_proc(slot)
        pthread_mutex_unlock(&self._lock)
        return ok

    def owned_set(self, int slot):
        """The epoll fd this slot owns now (-1 for none): a woken spare reads its new set here. A thread without
        a slot (-1: retired, or not registered yet) owns none."""
        cdef int fd
        if slot == -1:
            return -1
        self._check(slot)
        with nogil:
            pthread_mutex_lock(&self._lock)
        fd = self._slots[slot].epoll_fd if self._slots[slot].state == ACTIVE else -1
        pthread_mutex_unlock(&self._lock)
        return fd

    def give(self, int slot, int epoll_fd):
        """Hand ``epoll_fd`` to a spare slot directly (at startup: each serving thread gets its first set)."""
        self._check(slot)
        with nogil:
            pthread_mutex_lock(&self._lock)
        self._slots[slot].epoll_fd = epoll_fd
        self._slots[slot].state = ACTIVE
        pthread_mutex_unlock(&self._lock)

    def spare_count(self):
        cdef int i, n = 0
        with nogil:
            pthread_mutex_lock(&self._lock)
        for i in range(self._size):
            if self._slots[i].state == SPARE:
                n += 1
        pthread_mutex_unlock(&self._lock)
        return n

    def thread_count(self):
        cdef int i, n = 0
        with nogil:
            pthread_mutex_lock(&self._lock)
        for i in range(self._size):
            if self._slots[i].state != FREE and self._slots[i].state != WATCHED:
                n += 1
        pthread_mutex_unlock(&self._lock)
        return n

    def stop(self):
        self._stopping = True

    def gc_callback(self, phase, info):
        """A ``gc.callbacks`` hook: a collection holds the GIL, so no step of app code advances while it runs.

        At the start the monitor stops deciding; at the end every step in progress is credited with the
        collection's duration and sampled afresh, so the collection's time (wall and CPU) never counts as the
        app's.
        """
        cdef int i
        cdef double paused
        cdef bint counted = False
        if phase == "start":
            self._gc_started = _now()
            self._collecting = True
            return
        if not self._collecting:
            return
        with nogil:
            pthread_mutex_lock(&self._lock)
        paused = _now() - self._gc_started
        for i in range(self._size):
            if self._slots[i].entered_at > 0 and self._slots[i].state != WATCHED:
                self._slots[i].entered_at += paused  # (a new value: _blocked() samples the step's CPU afresh)
                counted = True
        if counted:
            self.gc_pauses += 1
        self._collecting = False
        pthread_mutex_unlock(&self._lock)

    def run(self):
        """The monitor loop; call it from a dedicated thread. Returns after ``stop()``."""
        cdef double now, threshold, urgent, age, wait = SLOW_TICK, until
        cdef bint hot
        cdef int i
        self._last_takeover = -1e9
        with nogil:
            while not self._stopping:
                _nap(wait)
                self.wakeups += 1
                hot = _now() - self._last_takeover < HOT_SECONDS
                wait = self._tick if hot else SLOW_TICK
                if self._collecting:
                    continue  # no step advances during a collection: see gc_callback
                now = _now()
                if self._sampler_fd >= 0:
                    self._flag_long_steps(now)
                threshold = self._threshold if hot else (SLOW_TICK if SLOW_TICK > self._threshold
                                                         else self._threshold)
                urgent = threshold * URGENT_SHARE
                for i in range(self._size):
                    if self._slots[i].state != ACTIVE or self._slots[i].entered_at == 0:
                        continue
                    age = now - self._step_start(i)
                    if age > threshold:
                        if self._blocked(i, threshold):
                            self._take_over(i, now, threshold)
                    elif hot and age > urgent and self._sleeping_while_others_wait(i):
                        self._take_over(i, now, urgent)
                    elif hot:
                        # Look again when this step reaches its next mark, rather than up to a tick later.
                        # (past the urgent mark with nobody waiting yet: look again each urgent share)
                        until = urgent - age if age <= urgent else min(threshold - age, urgent)
                        if until < wait:
                            wait = until if until > MIN_NAP else MIN_NAP

    cdef inline double _step_start(self, int i) noexcept nogil:
        """When the step in slot ``i`` began, or last waited for the GIL: time spent waiting for another thread's
        Python is not the step's own."""
        cdef Slot* slot = &self._slots[i]
        if slot.gil_step == slot.entered_at and slot.gil_seen > slot.entered_at:
            return slot.gil_seen
        return slot.entered_at

    cdef bint _sleeping_while_others_wait(self, int i) noexcept nogil:
        """Slot ``i`` has been in one step past the urgent mark: is it asleep in a blocking call (not waiting for
        the GIL) while requests or new clients wait in its set? Then waiting for the whole threshold only delays
        them."""
        cdef Slot* slot = &self._slots[i]
        cdef char state
        cdef int kind
        cdef epoll_event ev
        if slot.stat_fd < 0 or slot.syscall_fd < 0:
            return False  # (no /proc: the threshold alone decides)
        kind = _syscall_kind(slot.syscall_fd)
        if kind == WAITS_FOR_GIL:
            self._waited_for_gil(slot)
            return False
        if kind != IN_SYSCALL:
            return False
        state = _read_state(slot.stat_fd)
        if state != 83 and state != 68:  # neither 'S' nor 'D'
            return False
        return epoll_wait(slot.epoll_fd, &ev, 1, 0) > 0

    cdef inline void _waited_for_gil(self, Slot* slot) noexcept nogil:
        slot.gil_step = slot.entered_at
        slot.gil_seen = _now()

    cdef bint _blocked(self, int i, double threshold) noexcept nogil:
        """Slot ``i`` has been in one step past the threshold: is it blocked, or only waiting for a CPU or the GIL?"""
        cdef Slot* slot = &self._slots[i]
        cdef char state
        cdef long long cpu
        cdef int kind
        if slot.stat_fd < 0:
            return True
        cpu = _read_number(slot.sched_fd)
        if slot.seen_entered != slot.entered_at:
            slot.seen_entered = slot.entered_at  # first look at this step: CPU time is counted from here
            slot.cpu_ns_seen = cpu
        kind = _syscall_kind(slot.syscall_fd)
        if kind == WAITS_FOR_GIL:
            # Another thread runs Python, and a spare would wait for it just the same: not blocked, and the step's
            # clock restarts (_step_start).
            self._waited_for_gil(slot)
            return False
        state = _read_state(slot.stat_fd)
        if state == 0 or cpu < 0:
            return True  # the thread is gone or /proc says nothing: as without the check
        if state != 82 and kind != IN_USER:  # not 'R': sleeping in a blocking call or on a lock
            return True
        # Running or runnable: blocked only if it really spent the threshold computing (a CPU-bound handler),
        # not if it was preempted.
        return (cpu - <long long>slot.cpu_ns_seen) * 1e-9 > threshold

    cdef void _take_over(self, int stuck, double now, double threshold) noexcept nogil:
        cdef int i, spare = -1
        cdef uint64_t one = 1
        pthread_mutex_lock(&self._lock)
        # Re-check under the lock: the thread may have left app code since the unlocked read.
        if (self._slots[stuck].state != ACTIVE or self._slots[stuck].entered_at == 0 or self._collecting
                or now - self._slots[stuck].entered_at <= threshold):
            pthread_mutex_unlock(&self._lock)
            return
        for i in range(self._size):
            if self._slots[i].state == SPARE:
                spare = i
                break
        if spare < 0:
            # No spare yet (one is being started, or --max-threads is reached): try again next tick.
            pthread_mutex_unlock(&self._lock)
            return
        if self._slots[stuck].current_fd >= 0:
            epoll_ctl(self._slots[stuck].epoll_fd, EPOLL_CTL_DEL, self._slots[stuck].current_fd, NULL)
        self._slots[spare].epoll_fd = self._slots[stuck].epoll_fd
        self._slots[spare].state = ACTIVE
        self._slots[stuck].epoll_fd = -1
        self._slots[stuck].state = LOST
        self.takeovers += 1
        self._last_takeover = now
        write(self._slots[spare].wake_fd, &one, sizeof(one))
        if self._sampler_fd >= 0 and not self._slots[stuck].flagged:
            self._flag(&self._slots[stuck], self._slots[stuck].entered_at)  # where is it stuck? (captured while it still is)
        pthread_mutex_unlock(&self._lock)


cdef int mark_enter(object monitor, int slot, int fd) except -1:
    """``monitor.enter(slot, fd)`` from compiled code: a C call (a Python subclass's override still runs)."""
    (<Monitor>monitor).enter(slot, fd)
    return 0


cdef int mark_leave(object monitor, int slot) except -1:
    """``monitor.leave(slot)`` from compiled code: 1 if the thread lost its set meanwhile (a takeover)."""
    return 1 if (<Monitor>monitor).leave(slot) else 0
