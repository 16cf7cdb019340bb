"""Shutdown, step 1: stop accepting without losing a client (see docs/deployment.md, "Startup and shutdown").

Each set's owner, as the monitor's slot table says (a thread stuck in a handler has handed its set on and is never
asked), accepts what is queued and leaves the listeners; then the main thread takes the connections still queued
(new handshakes refused first: listen_close.py), closes the listeners and hands those connections to a thread that
is not stuck. A worker process sharing its supervisor's socket leaves the queue to the others, unless the
supervisor named it the last one (``server.last_door``).
"""

from __future__ import annotations

import logging
import threading
import time

from hybrid.listen_close import HANDSHAKE_SETTLE, refuse_new_handshakes

logger = logging.getLogger("hybrid.error")

# How long the threads that own the sets get to accept what is queued (they are not stuck: a stuck one has handed
# its set on and is not asked).
DOOR_WAIT = 1.0


def set_owners(server) -> list:
    """(thread, set) for each set, by the monitor's slot table: a thread stuck in a handler has handed its set
    on (its ``conn_set`` names it until the handler returns), so it is never asked to accept or to serve."""
    owners = []
    for worker in list(server.threads.workers):
        loop = worker.loop
        if worker.slot < 0 or loop is None or not loop.is_running():
            continue
        conn_set = server.sets.get(server.monitor.owned_set(worker.slot))
        if conn_set is not None:
            owners.append((worker, conn_set))
    return owners


def close_the_door(server) -> None:
    """Stop accepting without losing the connections queued in the kernel: each set's owner accepts what is
    queued and leaves the listeners (on its own thread: a set has one owner), then the listeners close."""
    if server.acceptor is not None:
        _close_the_async_door(server)
        return
    answers = []
    for worker, conn_set in set_owners(server):
        done = threading.Event()
        try:
            worker.loop.call_soon_threadsafe(worker.close_the_door, done, conn_set)
        except RuntimeError:  # its loop just closed
            continue
        answers.append(done)
    deadline = time.monotonic() + DOOR_WAIT
    for done in answers:
        done.wait(max(0.0, deadline - time.monotonic()))
    for conn_set in server.sets.values():  # a set whose owner did not answer in time (or changed hands)
        conn_set.stop_accepting()
    if server.given_sockets is not None and not server.last_door:
        return  # a socket shared with the supervisor: what is still queued is for the other workers
    # Clients kept connecting while the owners answered: take those here (new handshakes refused first, so none
    # completes between the last accept and the close), close the listeners, and hand the connections to a
    # thread that owns a set (never a stuck one); wait until it has them, so the drain counts them. With no such
    # thread they are closed.
    late = _latecomers(server)
    server._close_listeners()  # (at once: a client connecting while the latecomers are handed on is refused)
    if late:
        _hand_latecomers(server, late)


def _hand_latecomers(server, late: list) -> None:
    owners = set_owners(server)
    if not owners:
        for sock, _addr in late:
            sock.close()
        return
    (worker, conn_set), adopted = owners[0], threading.Event()

    def adopt_all():
        try:
            for sock, addr in late:
                worker.adopt(conn_set, sock, addr)
        finally:
            adopted.set()

    worker.loop.call_soon_threadsafe(adopt_all)
    if not adopted.wait(DOOR_WAIT):
        logger.warning("Connections queued at shutdown were not taken in %.0f s.", DOOR_WAIT)


def _latecomers(server) -> list:
    """Connections still queued on the listeners, accepted here (shutdown: right before they close)."""
    late = []
    # (an inherited socket outlives us: it must keep taking connections)
    filtered = [refuse_new_handshakes(listener) for listener in server.listeners if server.config.fd is None]
    if any(filtered):
        time.sleep(HANDSHAKE_SETTLE)  # (handshakes under way when the SYNs stopped: their last ACK lands first)
    for listener in server.listeners:
        while len(late) < 1 << 16:
            try:
                late.append(listener.accept())
            except OSError:  # BlockingIOError: the queue is empty
                break
    return late


def _close_the_async_door(server) -> None:
    """--mode async: the pool's loop accepts what is queued and stops watching; latecomers follow it."""
    done = threading.Event()
    server.pool.loop.call_soon_threadsafe(server.acceptor.close_door, done)
    done.wait(2.0)
    if server.given_sockets is not None and not server.last_door:
        return  # a socket shared with the supervisor: what is still queued is for the other workers
    late = _latecomers(server)
    server._close_listeners()
    if late:
        adopted = threading.Event()
        server.pool.loop.call_soon_threadsafe(server.acceptor.adopt_all, late, adopted)
        adopted.wait(2.0)
