# What the kernel says about a thread (included by monitor.pyx): its state, CPU time and system call from
# /proc, and where a thread waiting for the GIL sleeps (gil_futex()). Split out to keep monitor.pyx about the slots.

cdef long long _read_number(int fd) noexcept nogil:
    """The first number in a /proc file (schedstat: nanoseconds on a CPU); -1 if it cannot be read."""
    cdef char buf[64]
    cdef ssize_t n = pread(fd, buf, 63, 0)
    if n <= 0:
        return -1
    buf[n] = 0
    return <long long>strtoull(buf, NULL, 10)


cdef char _read_state(int fd) noexcept nogil:
    """The state letter of /proc/.../stat ("R", "S", "D", ...), after the last ')' of the command name."""
    cdef char buf[512]
    cdef ssize_t n = pread(fd, buf, 511, 0)
    cdef char* p
    if n <= 0:
        return 0
    buf[n] = 0
    p = strrchr(buf, 41)  # ')'
    if p == NULL or p[1] == 0:
        return 0
    return p[2]


# What /proc/.../syscall says a thread is doing
cdef enum:
    UNKNOWN = -1   # the file cannot be read
    IN_SYSCALL = 0  # in a system call other than a wait for the GIL: a blocking call, a lock, I/O
    WAITS_FOR_GIL = 1
    IN_USER = 2    # on a CPU ("running"), or preempted outside any system call ("-1 ...")


cdef int _syscall_kind(int fd) noexcept nogil:
    """Read once, so that one consistent snapshot decides ("202 0xADDR ..." is futex(2) on x86-64)."""
    cdef char buf[128]
    cdef char* end
    cdef ssize_t n
    if fd < 0:
        return UNKNOWN
    n = pread(fd, buf, 127, 0)
    if n <= 0:
        return UNKNOWN
    buf[n] = 0
    if buf[0] == 114 or buf[0] == 45:  # 'r'unning, '-'1
        return IN_USER
    if strncmp(buf, FUTEX_NR, FUTEX_NR_LEN) == 0 and _waits_for_gil(strtoull(buf + FUTEX_NR_LEN, &end, 16)):
        return WAITS_FOR_GIL
    return IN_SYSCALL


# futex(2)'s number as /proc/.../syscall prints it, followed by a space (x86-64: 202; aarch64: 98)
_FUTEX_NR_TEXT = b"98 " if os.uname().machine in ("aarch64", "arm64") else b"202 "
cdef const char* FUTEX_NR = _FUTEX_NR_TEXT
cdef int FUTEX_NR_LEN = len(_FUTEX_NR_TEXT)

# Where a thread waiting for the GIL sleeps: found once by making a thread wait for it (gil_futex()). The GIL's
# condition variables and mutexes lie within a couple of hundred bytes of it (CPython's _gil_runtime_state).
cdef unsigned long long _gil_addr = 0
cdef unsigned long long GIL_BELOW = 128
cdef unsigned long long GIL_ABOVE = 192


cdef inline bint _waits_for_gil(unsigned long long addr) noexcept nogil:
    return _gil_addr != 0 and addr != 0 and _gil_addr - GIL_BELOW <= addr <= _gil_addr + GIL_ABOVE


cdef void _hold_gil_until_waited(int fd, double limit) noexcept:
    """Called with the GIL, never releasing it: spin until the thread behind ``fd`` sleeps in futex(2) waiting for
    it, and record where."""
    global _gil_addr
    cdef double until = _now() + limit
    cdef char buf[128]
    cdef char* end
    cdef ssize_t n
    while _now() < until:
        n = pread(fd, buf, 127, 0)
        if n > 0:
            buf[n] = 0
            if strncmp(buf, FUTEX_NR, FUTEX_NR_LEN) == 0:
                _gil_addr = strtoull(buf + FUTEX_NR_LEN, &end, 16)
                return


def _gil_waiter(box):
    box.append(threading.get_native_id())
    cdef timespec nap
    nap.tv_sec = 0
    nap.tv_nsec = 2_000_000
    with nogil:
        nanosleep(&nap, NULL)  # the caller takes the GIL meanwhile and keeps it: returning waits for it


def gil_futex():
    """Where a thread waiting for the GIL sleeps (0 if it could not be found): a helper releases the GIL for a
    moment, this thread takes it and keeps it, and /proc shows the futex the helper then waits on."""
    if not _gil_addr:
        for _ in range(3):  # (on a busy machine the helper may not get a CPU within one try)
            if _find_gil_futex(0.2):
                break
    return _gil_addr


cdef unsigned long long _find_gil_futex(double limit):
    import time
    box = []
    helper = threading.Thread(target=_gil_waiter, args=(box,), name="hybrid-gil-probe", daemon=True)
    helper.start()
    while not box:
        time.sleep(0.0005)
    try:
        fd = os.open(f"/proc/self/task/{box[0]}/syscall", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        helper.join()
        return 0
    try:
        _hold_gil_until_waited(fd, limit)
    finally:
        os.close(fd)
    helper.join()
    return _gil_addr
