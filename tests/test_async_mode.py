"""--mode async: every request on the async pool's one loop, with the same H1Protocol and request logic.

The escape hatch for apps with module-level async objects (tests/apps/one_loop.py): they must work here under
concurrency. Keep-alive, pipelining, bodies, streams, WebSockets, timeouts, limits and a graceful SIGTERM are
checked over real sockets.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time

import httpx
import pytest
import websockets

from tests.support import RawClient, Server, build_request

pytestmark = pytest.mark.timeout(60)


def _server(app: str, *args: str) -> Server:
    return Server(app, "--port", "0", "--mode", "async", *args)


def test_banner_and_every_request_on_the_pool_loop():
    with _server("tests.apps.one_loop:app") as srv:
        assert "async mode: one event loop" in srv.output
        with RawClient(srv.addr, timeout=5) as c:
            names = {c.request("GET", "/thread").body for _ in range(5)}
        assert names == {b"hybrid-async-pool"}, names


def test_module_level_asyncio_objects_work_under_concurrency():
    with _server("tests.apps.one_loop:app", "--no-access-log") as srv:
        base = f"http://127.0.0.1:{srv.port}"

        async def go():
            async with httpx.AsyncClient(base_url=base, timeout=20) as client:
                # Half of them accept text/event-stream: in hybrid mode those would run on the pool's loop, the
                # others on a worker's, and the shared lock would fail on one of the two.
                rs = await asyncio.gather(*(client.get("/count?t=0.005", headers={
                    "Accept": "text/event-stream" if i % 2 else "text/plain"}) for i in range(40)))
            return rs

        responses = asyncio.run(go())
        assert all(r.status_code == 200 for r in responses), [r.status_code for r in responses]
        bodies = sorted(int(r.text.split()[0]) for r in responses)
        assert bodies == list(range(1, 41))
        assert all(r.text.endswith("loops=1") for r in responses)
        assert "different event loop" not in srv.output and "Exception in ASGI" not in srv.output, srv.output


def test_keep_alive_pipelining_and_bodies():
    with _server("tests.apps.basic:app", "--no-access-log") as srv:
        with RawClient(srv.addr, timeout=5) as c:
            body = b"x" * 300_000
            c.send(build_request("POST", "/echo", body=body) + build_request("GET", "/") +
                   build_request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                                 body=b"5\r\nhello\r\n0\r\n\r\n"))
            first, second, third = (c.read_response("POST"), c.read_response("GET"), c.read_response("POST"))
            assert first.status == 200 and first.body == body
            assert second.body == b"hello, world"
            assert third.body == b"hello"
            assert c.request("GET", "/").status == 200


def test_streams_and_websockets():
    with _server("tests.apps.ws:app", "--no-access-log") as srv:
        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
                for i in range(5):
                    await ws.send(f"m{i}")
                    assert await asyncio.wait_for(ws.recv(), 5) == f"m{i}"

        asyncio.run(go())
    with _server("tests.apps.streaming:app", "--no-access-log") as srv:
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=10) as client:
            with client.stream("GET", "/sse?interval=0.05&count=5", headers={"Accept": "text/event-stream"}) as r:
                events = [line for line in r.iter_lines() if line.startswith("data")]
            assert len(events) == 5


def test_idle_and_head_timeouts():
    with _server("tests.apps.basic:app", "--timeout-keep-alive", "1", "--timeout-request-head", "1.5") as srv:
        idle = RawClient(srv.addr, timeout=10)
        assert idle.request("GET", "/").status == 200
        trickle = socket.create_connection(srv.addr, timeout=10)
        trickle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        t = time.monotonic()
        assert idle.closed_by_peer(3), "idle keep-alive connection not closed after --timeout-keep-alive"
        for _ in range(3):  # still trickling, one byte at a time
            time.sleep(0.3)
            try:
                trickle.sendall(b"X")
            except OSError:
                break
        data = b""
        while chunk := trickle.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408"), data[:80]
        assert time.monotonic() - t < 4
        idle.close()
        trickle.close()


def test_blocking_handler_stalls_everyone_as_documented():
    """No threads to hand connections to: this is what --mode async gives up (docs/threading.md)."""
    with _server("tests.apps.basic:app", "--no-access-log") as srv:
        blocker = threading.Thread(target=lambda: RawClient(srv.addr, timeout=10).request("GET", "/sleep?t=1"))
        blocker.start()
        time.sleep(0.2)
        t = time.monotonic()
        with RawClient(srv.addr, timeout=10) as c:
            assert c.request("GET", "/").status == 200
        assert time.monotonic() - t > 0.5
        blocker.join(5)


def test_sigterm_drains_in_flight_and_exits_zero():
    with _server("tests.apps.basic:app", "--no-access-log") as srv:
        slow = RawClient(srv.addr, timeout=10)
        slow.send(build_request("GET", "/asleep?t=1"))
        idle = RawClient(srv.addr, timeout=10)
        assert idle.request("GET", "/").status == 200
        time.sleep(0.2)
        srv.signal(signal.SIGTERM)
        response = slow.read_response("GET")
        assert response.status == 200 and response.body == b"aslept"
        assert (response.header("connection") or "").lower() == "close"
        assert idle.closed_by_peer(2)
        assert srv.wait(10) == 0, srv.output


def test_limits_in_async_mode():
    with _server("tests.apps.basic:app", "--no-access-log", "--limit-connections", "1",
                 "--limit-concurrency", "5") as srv:
        held = RawClient(srv.addr, timeout=10)
        assert held.request("GET", "/").status == 200
        waiting = socket.create_connection(srv.addr, timeout=5)
        waiting.sendall(build_request("GET", "/", headers=[("Connection", "close")]))
        waiting.settimeout(0.6)
        with pytest.raises(TimeoutError):
            waiting.recv(100)
        held.close()
        waiting.settimeout(5)
        assert waiting.recv(65536).startswith(b"HTTP/1.1 200")
        waiting.close()
