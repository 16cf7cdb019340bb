"""The end of a stream that a worker thread serves, at shutdown: a response that went on streaming in a worker's
loop (``stream_known``: its route is learned, its next requests go to the async pool) is a stream like the pool's,
so it gets the streams' bound (``--timeout-graceful-shutdown``, or STREAMS_DEFAULT without it), not the unbounded
wait of a request. Then its app is cancelled and the connection closes without a last chunk, as the pool's
streams do: a client must never take a cut-off response for a whole one."""

from __future__ import annotations

# After the cancel, how long the main thread gives the worker loops to close those connections.
CANCEL_WAIT = 0.2


def _stream_cycles(connections):
    for conn in list(connections):
        cycle = getattr(conn, "cycle", None)
        if getattr(conn, "in_pool", False) or cycle is None or not cycle.stream_known:
            continue
        if getattr(conn, "loop", None) is not None and cycle.task is not None:
            yield conn.loop, cycle.task


def worker_streams(connections) -> int:
    return sum(1 for _ in _stream_cycles(connections))


def end_worker_streams(connections) -> int:
    """From the main thread: cancel the app of every stream served by a worker loop; returns how many."""
    ended = 0
    for loop, task in _stream_cycles(connections):
        try:
            loop.call_soon_threadsafe(task.cancel)
            ended += 1
        except RuntimeError:  # its loop is closed
            pass
    return ended
