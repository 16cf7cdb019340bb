"""Responses completed in a step the loop resumed, held to the end of that loop iteration (hybrid/_speedups/held.pyx,
``LoopHeld``), as those served in a set owner's batch are held to the batch's end (tests/test_held_responses.py).

The app's ``/later/...`` routes await ``asyncio.sleep(0)`` first, so their response completes in a loop callback
(as a FastAPI ``def`` endpoint's does when anyio's thread hands its result back). What is checked, over plain TCP
and TLS: such a response is held to the end of its step; it leaves although nothing else happens on the loop
afterwards (the loop then sleeps in epoll); a handler that blocks in the same loop iteration delays it only until
the takeover; one the kernel takes only in part arrives whole, before the next; a stream handoff read before
the flush sends it first. Real server processes over 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.support import Server, build_request
from tests.test_held_responses import _read_response, ask_unread_then_read_all
from tests.test_tls import client_context, pki, tls_args  # noqa: F401 (pki: a fixture)

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.held:app"


def _connect(srv, pki=None, rcvbuf: int = 0) -> socket.socket:  # noqa: F811 (pki: the fixture's value)
    raw = socket.socket()
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # (before connect: it sets the window)
    raw.settimeout(15)
    raw.connect(srv.addr)
    return raw if pki is None else client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")


def _server(tls: bool, pki, *extra: str) -> Server:  # noqa: F811
    return Server(APP, *(tls_args(pki, *extra) if tls else ["--port", "0", *extra]))


def test_a_resumed_steps_response_leaves_although_the_loop_then_sleeps():
    # One connection, one request at a time: after its response is held nothing else happens on the loop, so
    # only the flush scheduled when it was held can send it. Each must arrive before the next is asked for.
    with Server(APP, "--port", "0") as srv:
        sock = _connect(srv)
        sock.settimeout(5)
        try:
            for i in range(3):
                sent = time.monotonic()
                sock.sendall(build_request("GET", "/later/fast"))
                _, body, after = _read_response(sock)
                took = time.monotonic() - sent
                assert body == b"fast" and after == b""
                # (unflushed, it would leave only when keep-alive's 5 s close sends it first)
                assert took < 2.5, f"response {i} arrived after {took:.2f} s"
                time.sleep(0.2)  # (the loop goes to sleep in epoll between requests)
        finally:
            sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_resumed_steps_response_is_held_to_the_end_of_its_step(pki, tls):  # noqa: F811
    # /later/then-sleep completes its response in a resumed step, then blocks 0.6 s in that same step (well below
    # the threshold: no takeover). Held to the end of the loop iteration, the response leaves after the 0.6 s.
    with _server(tls, pki, "--blocking-threshold", "10") as srv:
        sock = _connect(srv, pki if tls else None)
        try:
            sent = time.monotonic()
            sock.sendall(build_request("GET", "/later/then-sleep?s=0.6"))
            _, body, after = _read_response(sock)
            waited = time.monotonic() - sent
            assert body == b"fast" and after == b""
            assert waited >= 0.5, f"answered {waited:.3f} s after the request: not held to the step's end"
            sock.sendall(build_request("GET", "/later/fast"))  # the connection is whole: nothing twice
            _, body, after = _read_response(sock)
            assert body == b"fast" and after == b""
        finally:
            sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_handler_blocking_in_the_same_loop_iteration_delays_a_held_response_only_until_the_takeover(pki, tls):  # noqa: F811,E501
    # /park/sleep?s=4 waits for the loop's "go" event. /later/go sets it in a resumed step, then completes its
    # response there: held, and its flush is queued behind the parked request's wake-up, which then blocks the
    # thread 4 s in the same loop iteration. The spare that takes the set over must send /later/go's response
    # (threshold 1 s plus a tick), not the loop when the handler returns.
    with _server(tls, pki, "--blocking-threshold", "1.0") as srv:
        fast, slow = (_connect(srv, pki if tls else None) for _ in range(2))
        try:
            slow.sendall(build_request("GET", "/park/sleep?s=4"))
            time.sleep(0.3)  # (parked on the event now)
            sent = time.monotonic()
            fast.sendall(build_request("GET", "/later/go"))
            _, body, after = _read_response(fast)
            took = time.monotonic() - sent
            assert body == b"fast" and after == b""
            assert took < 2.5, f"/later/go answered after {took:.2f} s\n{srv.output[-2000:]}"
            fast.sendall(build_request("GET", "/fast"))  # the connection is whole: nothing twice, nothing left
            _, body, after = _read_response(fast)
            assert body == b"fast" and after == b""
            _, body, _ = _read_response(slow)
            assert body == b"slept"
        finally:
            for sock in (fast, slow):
                sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_resumed_steps_held_response_the_kernel_did_not_take_is_written_before_the_next(pki, tls):  # noqa: F811
    # As tests/test_held_responses.py's partial-write test, each response held to the end of its loop iteration.
    size, count = 60_000, 120  # (7.2 MB: more than loopback's buffers take, whatever they grow to)
    with _server(tls, pki) as srv:
        sock = _connect(srv, pki if tls else None, rcvbuf=16 << 10)
        try:
            ask_unread_then_read_all(sock, size, count, prefix="/later")
        finally:
            sock.close()


def test_a_handoff_read_before_the_flush_sends_the_held_response_first():
    # /later/then-sleep's response is held while its step sleeps 0.3 s; meanwhile the client's next request, a
    # stream (Accept: text/event-stream, handed to the async pool), arrives. The loop's poll reads it before the
    # iteration's flush runs: the handoff must send the held response first, then the pool answers the stream.
    from tests.apps.slowread import blob

    with Server(APP, "--port", "0", "--blocking-threshold", "10") as srv:
        sock = _connect(srv)
        try:
            sock.sendall(build_request("GET", "/later/then-sleep?s=0.3"))
            time.sleep(0.1)  # (in that step now)
            sock.sendall(build_request("GET", "/blob?n=100", headers=[("Accept", "text/event-stream")]))
            _, body, buf = _read_response(sock)
            assert body == b"fast", body[:100]
            _, body, after = _read_response(sock, buf)
            assert body == blob(100) and after == b""
        finally:
            sock.close()
