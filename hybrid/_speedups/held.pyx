# cython: language_level=3
"""The responses a set's owner holds to the end of its batch of ready connections (``Connection.send_last``;
why, and what may be held: hybrid/held_write.py). One per ConnectionSet (``ConnectionSet.held``).

A response completed in a step the loop resumed (a FastAPI ``def`` endpoint or a ``FileResponse``'s ``os.stat``
came back from anyio's thread) joins the same batch, and its thread's ``LoopHeld`` flushes it at the end of that
loop iteration's callbacks (``send_resumed``).

Compiled, and two lists that take turns instead of one that grows and empties: appending to an empty list and
emptying it again allocated and freed its items for every batch (glibc's realloc, 0.5k instructions per request
with one connection). ``flush`` swaps the lists before it writes, so a thread that flushes the same set at once
(the one a takeover left stuck in a handler, and the spare) never walks entries the other is refilling.
"""

from cpython.pythread cimport PyThread_get_thread_ident

from hybrid._speedups.connection cimport Connection

from hybrid._speedups.cycle import ClientDisconnected


cdef class HeldBatch:
    def __cinit__(self):
        self.conns = []
        self.spare = []
        self.n = 0

    def __bool__(self):
        return self.n > 0

    def __len__(self):
        return self.n

    cdef int add(self, conn) except -1:
        if self.n < len(self.conns):
            self.conns[self.n] = conn
        else:
            self.conns.append(conn)
        self.n += 1
        return 0

    def flush(self):
        """Write each held response in one ``send``; the rest of one the kernel did not take is written as the
        client reads (hybrid/held_write.py)."""
        cdef list conns = self.conns
        cdef Py_ssize_t i, n = self.n
        cdef Connection conn
        self.conns = self.spare if self.spare is not None else []
        self.spare = None
        self.n = 0
        for i in range(n):
            conn = conns[i]
            conns[i] = None
            data = conn.held_out
            conn.held_out = None
            if data is None or conn.sock is None:
                continue
            try:
                rest = conn.send_now(data)
            except ClientDisconnected:
                if conn.cycle is None:
                    conn.close()
                continue
            if rest is not None:
                from hybrid.held_write import write_rest
                write_rest(conn, rest)
        self.spare = conns


cdef class LoopHeld:
    """One per serving thread (``SyncWorker.loop_held``): the sets' batches that responses completed in this
    loop's callbacks were held in, flushed by one ``call_soon`` made when the first of an iteration is held.

    Why that is soon enough: uvloop runs the callbacks made ready during one idle phase in the next one, and while
    any is ready its poll does not wait (timeout 0), so the flush runs after at most one poll of I/O events (the
    set's own ``_on_ready`` ends with a flush of the same batch too) and never after the loop went to sleep.
    A takeover finds these responses in the set's batch and sends them at once (``SyncWorker._own``)."""

    def __cinit__(self, loop):
        self.loop = loop
        self.targets = []
        self._flush = self.flush  # (the bound method made once, not per iteration)

    cdef int hold(self, HeldBatch batch, conn) except -1:
        batch.add(conn)
        for target in self.targets:
            if target is batch:
                break
        else:
            self.targets.append(batch)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._flush)
        return 0

    def flush(self):
        self.scheduled = False
        targets = self.targets
        while targets:
            (<HeldBatch>targets.pop()).flush()


cdef object _loop_held(Connection c):
    """This thread's LoopHeld when a response of ``c`` completed now may be held to the loop iteration's end (a
    keep-alive connection, nothing queued behind it, served by this thread, which still owns its set); else
    None. Not held: a pool connection, a step on another thread, a thread that lost the set to a takeover (the
    spare flushed the set's batch when it took it)."""
    worker = c.worker
    if c.held_out is not None or c.backlog or c.sock is None or worker is None or not c.proto.keep_alive:
        return None
    held = getattr(worker, "loop_held", None)  # (a stand-in worker without one, bench/request_path.py's: sent now)
    if held is None or worker.conn_set is not c.home or worker.ident != PyThread_get_thread_ident():
        return None
    return held


cdef object send_resumed(conn, data):
    """``Connection.send_last`` outside the owner's batch of ready connections: held as there until this loop
    iteration's callbacks are over when it may be (``_loop_held``), else sent now."""
    cdef Connection c = <Connection>conn
    if type(data) is bytes:
        held = _loop_held(c)
        if held is not None:
            c.held_out = data
            (<LoopHeld>held).hold(c.home.held, c)
            return None
    return c.send_now(data)


def will_hold(conn):
    """Whether ``conn.send_last`` would hold a whole response completed now (hybrid/pathsend_small.py reads a
    larger file whole then: held, its one write costs less than sendfile's calls)."""
    if not isinstance(conn, Connection):
        return False
    cdef Connection c = <Connection>conn
    if c._batch is not None:
        return c.held_out is None and not c.backlog and c.proto.keep_alive
    return _loop_held(c) is not None


cdef bint send_held_first(conn) except -1:
    """Before a handoff (the pool writes next), a held response goes out: a request the app read past its
    response (receive() after it) may be a stream or an upgrade. If the kernel does not take all of it the
    connection closes (False): the pool cannot write what this thread holds."""
    cdef Connection c = <Connection>conn
    try:
        rest = c.send_now(b"")
    except ClientDisconnected:
        rest = b"-"
    if rest is not None:
        c.close()
        return False
    return True
