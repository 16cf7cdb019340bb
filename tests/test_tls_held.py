"""HTTPS responses held to the end of a batch of ready connections (hybrid/held_write.py), as plain ones are.

Over TLS the held bytes are the plaintext response, written at the batch's end with the connection's TLS write
(OpenSSL on the SSLSocket's own SSL object, or ``SSLSocket.send`` with HYBRID_TLS_DIRECT=0). What is checked:
a batch's responses leave after its apps; a handler that blocks delays the ones held before it only until the
takeover; a held response the kernel takes only part of (OpenSSL's want-write, retried with the same bytes) is
finished as the client reads, whole and in order, before the next. Real server processes, trustme certificates,
127.0.0.1; every wait bounded.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.support import Server, build_request
from tests.test_held_responses import _read_response, ask_unread_then_read_all, check_held_until_takeover
from tests.test_tls import client_context, pki, tls_args  # noqa: F401 (pki: a fixture)

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.held:app"
PATHS = {"direct": {}, "ssl-module": {"HYBRID_TLS_DIRECT": "0"}}


def _connect(pki, server, rcvbuf: int = 0) -> ssl.SSLSocket:  # noqa: F811 (pki: the fixture's value)
    raw = socket.socket()
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # (before connect: it sets the window)
    raw.settimeout(15)
    raw.connect(server.addr)
    return client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")


def test_a_batchs_https_responses_leave_after_its_apps(pki):  # noqa: F811 (the fixture)
    # /sleep?s=0.2 holds the thread while /fast and /sleep?s=0.6 arrive on two more connections, so those two
    # are the next batch. /fast's response is held until that batch ends: after the 0.6 s handler, not at once.
    # (The threshold is far above 0.6 s: no takeover sends it earlier.)
    with Server(APP, *tls_args(pki, "--blocking-threshold", "10")) as srv:
        first, fast, slow = (_connect(pki, srv) for _ in range(3))
        try:
            first.sendall(build_request("GET", "/sleep?s=0.2"))
            time.sleep(0.05)  # (the thread is in that handler now)
            fast.sendall(build_request("GET", "/fast"))
            slow.sendall(build_request("GET", "/sleep?s=0.6"))
            _, body, _ = _read_response(first)
            assert body == b"slept"
            batch_started = time.monotonic()
            _, body, after = _read_response(fast)
            waited = time.monotonic() - batch_started
            assert body == b"fast" and after == b""
            assert waited >= 0.4, f"/fast answered {waited:.3f} s into its batch: not held to the batch's end"
            _, body, _ = _read_response(slow)
            assert body == b"slept"
            fast.sendall(build_request("GET", "/fast"))  # the connection is whole: nothing twice, nothing left
            _, body, after = _read_response(fast)
            assert body == b"fast" and after == b""
        finally:
            for sock in (first, fast, slow):
                sock.close()


def test_a_blocking_handler_delays_held_https_responses_only_until_the_takeover(pki):  # noqa: F811
    # As tests/test_held_responses.py's plain test: /fast is served in the batch before /sleep?s=4 blocks, held,
    # and sent by the spare that takes the set over (threshold 1 s plus a tick), not when the handler returns.
    with Server(APP, *tls_args(pki, "--blocking-threshold", "1.0")) as srv:
        first, fast, slow = (_connect(pki, srv) for _ in range(3))
        try:
            check_held_until_takeover(srv, first, fast, slow)
        finally:
            for sock in (first, fast, slow):
                sock.close()


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_held_https_response_the_kernel_did_not_take_is_written_before_the_next(pki, path):  # noqa: F811
    # One request at a time, nothing read: each response is held and written alone at its batch's end until
    # the socket buffers are full and OpenSSL's write says want-write part way. Every response must then
    # arrive whole and in order once the client reads, and the session must still be usable.
    size, count = 60_000, 120  # (7.2 MB of plaintext: more than loopback's buffers take)
    with Server(APP, *tls_args(pki), env=PATHS[path]) as srv:
        sock = _connect(pki, srv, rcvbuf=16 << 10)
        try:
            ask_unread_then_read_all(sock, size, count)
        finally:
            sock.close()
