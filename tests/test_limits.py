"""--limit-concurrency (503 with Retry-After past it), --limit-connections (past it, clients wait in the
backlog) and --max-incomplete-event-size (431 past it; uvicorn's --h11-max-incomplete-event-size too)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import psutil
import pytest
import websockets

from tests.support import RawClient, Server, build_request, run_cli


def _get(addr, target: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    with RawClient(addr, timeout=timeout) as c:
        r = c.request("GET", target)
        return r.status, {k.lower(): v for k, v in r.headers}, r.body


def test_limit_concurrency_answers_503_with_retry_after_then_recovers():
    with Server("tests.apps.basic:app", "--port", "0", "--no-access-log", "--limit-concurrency", "2") as srv:
        slow = [threading.Thread(target=_get, args=(srv.addr, "/asleep?t=1.5")) for _ in range(2)]
        for t in slow:
            t.start()
        time.sleep(0.5)  # both are awaiting asyncio.sleep in the app now
        status, headers, body = _get(srv.addr, "/")
        assert status == 503, (status, body)
        assert headers.get("retry-after") == "1" and body == b"Service Unavailable\n", body  # (no server flags)
        for t in slow:
            t.join(10)
        status, _, _ = _get(srv.addr, "/")
        assert status == 200  # the slots were given back: no leak


def test_limit_concurrency_counts_blocking_handlers_and_keeps_the_connection():
    with Server("tests.apps.basic:app", "--port", "0", "--no-access-log", "--limit-concurrency", "1") as srv:
        blocked = threading.Thread(target=_get, args=(srv.addr, "/sleep?t=1.2"))
        blocked.start()
        time.sleep(0.4)
        with RawClient(srv.addr, timeout=10) as c:
            assert c.request("GET", "/").status == 503
            blocked.join(10)
            # The 503 was a complete, framed response: the same connection serves the next request. (The slot
            # is freed when the blocked app returns, just after its response reached its client: on a loaded
            # machine this request can come first and get another 503, on the same connection.)
            statuses = [c.request("GET", "/").status]
            while statuses[-1] == 503 and len(statuses) < 20:
                time.sleep(0.05)
                statuses.append(c.request("GET", "/").status)
            assert statuses[-1] == 200, statuses
        # 20 requests in a row, each alone: never refused (every slot is released).
        for _ in range(20):
            assert _get(srv.addr, "/")[0] == 200


def test_limit_concurrency_covers_websockets():
    with Server("tests.apps.ws:app", "--port", "0", "--no-access-log", "--limit-concurrency", "1") as srv:
        url = f"ws://127.0.0.1:{srv.port}/"

        async def go():
            async with websockets.connect(url) as first:
                await first.send("hello")
                assert await asyncio.wait_for(first.recv(), 5) == "hello"
                with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                    async with websockets.connect(url):
                        pass
                assert info.value.response.status_code == 503
                assert info.value.response.headers.get("retry-after") == "1"
            await asyncio.sleep(0.2)  # the first session ended: its slot is free again
            async with websockets.connect(url) as again:
                await again.send("x")
                assert await asyncio.wait_for(again.recv(), 5) == "x"

        asyncio.run(go())


def test_limit_connections_keeps_new_clients_in_the_backlog_until_one_closes():
    with Server("tests.apps.basic:app", "--port", "0", "--no-access-log", "--limit-connections", "2") as srv:
        held = [RawClient(srv.addr, timeout=10) for _ in range(2)]
        for c in held:
            assert c.request("GET", "/").status == 200
        # The kernel completes the handshake (backlog), but the server does not accept: no answer yet.
        waiting = socket.create_connection(srv.addr, timeout=5)
        waiting.sendall(build_request("GET", "/", headers=[("Connection", "close")]))
        waiting.settimeout(0.8)
        cpu = psutil.Process(srv.pid).cpu_times()
        with pytest.raises(TimeoutError):
            waiting.recv(100)
        # Not accepting means the listener left epoll: a server that merely skipped accept() would be woken for
        # the waiting client again and again (level-triggered), a busy loop.
        spent = sum(psutil.Process(srv.pid).cpu_times()[:2]) - sum(cpu[:2])
        assert spent < 0.3, f"server used {spent:.2f} s of CPU in 0.8 s while at its connection limit"
        held[0].close()
        waiting.settimeout(5)
        t = time.monotonic()
        data = waiting.recv(65536)
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        assert time.monotonic() - t < 2, "accepting did not resume promptly after a connection closed"
        waiting.close()
        held[1].close()


def test_max_incomplete_event_size_and_its_h11_alias():
    big = "a" * 6000
    for flag in ("--max-incomplete-event-size", "--h11-max-incomplete-event-size"):
        with Server("tests.apps.basic:app", "--port", "0", "--no-access-log", flag, "4096") as srv:
            with RawClient(srv.addr, timeout=5) as c:
                c.send(build_request("GET", "/", headers=[("X-Big", big)]))
                assert c.read_response("GET").status == 431
            with RawClient(srv.addr, timeout=5) as c:
                assert c.request("GET", "/", headers=[("X-Small", "a" * 3000)]).status == 200


@pytest.mark.parametrize("args, option", [
    (("--limit-concurrency", "0"), "--limit-concurrency"),
    (("--limit-connections", "0"), "--limit-connections"),
    (("--max-incomplete-event-size", "100"), "--max-incomplete-event-size"),
])
def test_bad_limits_are_one_line_errors(args, option):
    rc, out = run_cli("tests.apps.basic:app", *args)
    assert rc == 2 and option in out and "Traceback" not in out, out


def _stalled_client(addr, target: str) -> socket.socket:
    """A client that sends its request and then reads nothing (a small receive buffer, so the server's writes
    stop quickly)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(addr)
    sock.sendall(build_request("GET", target))
    return sock


def _read_all(sock: socket.socket, timeout: float) -> tuple[int, bool]:
    """(bytes read, whether the server closed the connection) within `timeout` seconds."""
    sock.settimeout(timeout)
    got, deadline = 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return got, True
            got += len(chunk)
    except ConnectionResetError:
        return got, True
    except TimeoutError:
        pass
    return got, False


@pytest.mark.parametrize("where", ["worker", "pool"])
def test_timeout_write_stall_cuts_a_client_that_stopped_reading(where):
    app = "tests.apps.basic:app" if where == "worker" else "tests.apps.streaming:app"
    target = "/big?n=200000000" if where == "worker" else "/big?total=200000000"
    with Server(app, "--port", "0", "--timeout-write-stall", "1") as srv:
        stalled = _stalled_client(srv.addr, target)
        time.sleep(2.8)  # stall (1 s) + the once-a-period check, with room for a slow machine
        got, closed = _read_all(stalled, 5)
        stalled.close()
        assert closed and got < 200_000_000, f"read {got} bytes, closed={closed}"
        assert "--timeout-write-stall" in srv.output
        # The server itself carries on.
        assert _get(srv.addr, "/")[0] == 200


def test_timeout_write_stall_spares_a_slow_but_steady_reader():
    # More than the kernel buffers on both sides hold (tcp_wmem's max is 4 MiB), so the server's writes wait on
    # this reader, who takes 256 KiB every 0.1 s: never a whole stall period (0.5 s) without progress.
    total = 12_000_000
    with Server("tests.apps.basic:app", "--port", "0", "--no-access-log", "--timeout-write-stall", "0.5") as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.connect(srv.addr)
        sock.sendall(build_request("GET", f"/big?n={total}"))
        got, t0 = 0, time.monotonic()
        sock.settimeout(5)
        while time.monotonic() - t0 < 30:
            time.sleep(0.1)
            chunk = sock.recv(256 * 1024)
            if not chunk:
                break
            got += len(chunk)
            if got > total:
                break
        sock.close()
        assert got > total, f"read {got} bytes of a {total}-byte body: cut off"
        assert time.monotonic() - t0 > 2, "the read was not slow enough to exercise the stall timer"
