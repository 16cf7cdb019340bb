"""Responses held to the end of a batch (``Connection.send_last``, ``flush_held``: hybrid/_speedups/connection.pyx).

Why hold them: a set's owner serves each ready connection from ``recv`` to its last byte. Sent at once, every
response's ``send`` runs the kernel's loopback/TCP path and wakes the client between one app and the next, so
the next app's code and data start cold in the caches (measured in docs/performance.md: a Starlette GET ran
its same ~100k interpreter instructions 1.5x slower per instruction than granian's Python thread, which runs
requests back to back while another thread does the I/O). Held, a batch's apps run back to back and its sends
leave together at the batch's end, before its loop does anything else.

What may be held: only a keep-alive connection's complete response (its last ``http.response.body``,
head and body in one ``bytes``; over TLS the plaintext, encrypted by the connection's TLS write when it goes)
served from the owner's batch (``on_readable``) with no request queued behind it, one per connection; or one
completed in a step the loop resumed (a FastAPI ``def`` endpoint, a ``FileResponse``'s ``os.stat``), held in
the same set's batch to the end of that loop iteration (held.pyx, ``LoopHeld``). Any other
write of that connection sends the held bytes first (``send_now``), and so does ``close`` (over TLS before its
close_notify: nothing may follow that alert). A takeover flushes the set's held responses as soon as the spare
owns the set (``SyncWorker._own``), so a handler that blocks delays them no longer than any other ready
connection of its set; the thread that blocked flushes what it still holds when its batch ends.

This module is the rare rest: the kernel did not take all of a held response (a client that stopped reading,
its buffers full). The connection is idle by then; it is marked as served through its loop (``async_mode``:
its set's owner only takes it out of the set if it becomes readable, so no request of it starts before the
rest is written) and the rest is written as the client reads, bounded by --timeout-write-stall like any slow
write; then it is an idle connection of a set again (``_settle``).
"""

from __future__ import annotations

from hybrid._speedups.cycle import ClientDisconnected


def write_rest(conn, rest) -> None:
    if conn.cycle is not None:  # (a request of it already runs: its next write sends the rest first)
        conn.held_out = bytes(rest)
        return
    conn.async_mode = True
    conn.loop.create_task(_write_rest(conn, rest))


async def _write_rest(conn, rest) -> None:
    try:
        await conn.finish_write(rest)
    except (ClientDisconnected, OSError):
        conn.close()
        return
    if conn.sock is not None:
        conn._settle()
