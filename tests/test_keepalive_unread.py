"""A keep-alive connection whose request arrived while its thread could not read it (blocked past
--timeout-keep-alive, with no takeover: here --blocking-threshold 30; in life a process stopped or a VM paused, or
every spare busy) is not idle: the keep-alive sweep must leave it to be served, not close it with the request
unread (a reset, and a request lost that the client sent in good faith)."""

import socket
import time

import pytest

from .support import Server

pytestmark = pytest.mark.timeout(60)

OTHERS = 4


@pytest.mark.parametrize("mode", ["hybrid", "async"])
def test_a_request_that_arrived_during_a_block_is_served_not_reset(mode):
    with Server("tests.apps.block_first:app", "--port", "0", "--no-access-log", "--timeout-keep-alive", "1",
                "--blocking-threshold", "30", "--mode", mode, env={"BLOCK_FIRST": "3"}) as srv:
        socks = [socket.create_connection(srv.addr, timeout=15) for _ in range(1 + OTHERS)]
        try:
            time.sleep(0.3)  # (accepted while the server is idle: they are its idle keep-alive connections)
            socks[0].sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # blocks the serving thread for 3 s
            time.sleep(0.3)
            for s in socks[1:]:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # unread until the block ends, 2 s past keep-alive
            answers = []
            for s in socks:
                try:
                    answers.append(s.recv(100).split(b"\r\n", 1)[0])
                except ConnectionResetError:
                    answers.append(b"reset")
            assert answers == [b"HTTP/1.1 200 OK"] * (1 + OTHERS)
        finally:
            for s in socks:
                s.close()
