"""Litestar on hybrid, end to end: routes, a controller, request bodies, exceptions, lifespan state, SSE and
WebSockets. App: tests/apps/litestar_app.py."""

import asyncio
import json
import re

import httpx
import pytest
import websockets

from .support import Server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server():
    with Server("tests.apps.litestar_app:app", "--port", "0", "--no-access-log") as srv:
        yield srv
        assert srv.alive(), srv.output


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_routes(client):
    r = client.get("/")
    assert (r.status_code, r.text) == (200, "litestar index")
    assert client.get("/books/3?fmt=long").json() == {"book_id": 3, "fmt": "long"}
    r = client.get("/books/0")
    assert r.status_code == 404 and r.json()["detail"] == "no book 0"
    assert client.get("/books/abc").status_code in (400, 404)
    assert client.get("/inventory/sku-1").json() == {"sku": "sku-1"}
    assert client.post("/inventory/", json={"x": 1}).json() == {"added": {"x": 1}}
    assert client.get("/nowhere").status_code == 404
    assert client.delete("/").status_code == 405


def test_body_validation(client):
    r = client.post("/orders", json={"item": "pen", "quantity": 4})
    assert r.status_code == 201 and r.json() == {"item": "pen", "quantity": 4, "total": 12}
    assert client.post("/orders", json={"item": "pen"}).status_code == 400


def test_sync_handler_runs_in_a_thread(client):
    assert not client.get("/sync").json()["thread"].startswith("hybrid-")


def test_lifespan_state(client):
    body = client.get("/state").json()
    assert body["greeting"] == "hello from litestar" and body["thread"].startswith("hybrid-worker-")


def test_sse(client):
    events, event = [], {}
    with client.stream("GET", "/sse?n=4", headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if event:
                    events.append(event)
                event = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(":")
                event[k] = v.strip()
    assert [e["id"] for e in events] == ["0", "1", "2", "3"]
    assert [e["data"] for e in events] == [f"tick {i} hybrid-async-pool" for i in range(4)]


def test_sse_without_accept_header(client):
    """No Accept: text/event-stream: it starts in a worker and streams from there to its end (the route is
    learned for the next request); the client gets every event once."""
    r = client.get("/sse?n=3")
    assert r.status_code == 200
    assert r.text.count("event: tick") == 3


def test_websockets(server):
    host, port = server.addr

    async def main():
        async with websockets.connect(f"ws://{host}:{port}/ws/echo") as ws:
            await ws.send("one")
            first = await ws.recv()
            await ws.send("two")
            second = await ws.recv()
        async with websockets.connect(f"ws://{host}:{port}/ws/raw") as ws:
            hello = json.loads(await ws.recv())
            await ws.send(b"abc")
            back = await ws.recv()
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
        return first, second, hello, back, info.value.rcvd.code

    first, second, hello, back, code = asyncio.run(asyncio.wait_for(main(), 20))
    assert (first, second) == ("echo: one", "echo: two")
    assert hello == {"greeting": "hello from litestar", "thread": "hybrid-async-pool"}
    assert (back, code) == (b"cba", 4003)


def test_sigterm_after_a_takeover_exits_cleanly():
    """A blocking handler makes a takeover start a spare, whose loop runs the app's lifespan after the pool's.
    Litestar enters its app's one event emitter in every lifespan and each exit undoes the last entry: when the
    pool's lifespan shut down first, it exited the spare's task group from the wrong loop and hung, and the
    server never exited (SIGKILL after 10 s). Lifespans now end in reverse order of their start."""
    with Server("tests.apps.litestar_app:app", "--port", "0", "--no-access-log") as srv:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            assert c.get("/block?t=0.3").json() == {"blocked": 0.3}
            assert c.get("/").text == "litestar index"
        srv.signal(15)
        rc = srv.wait(8)
        assert rc == 0, f"exit {rc}:\n{srv.output}"
    assert re.search(r"\b[1-9]\d* takeovers?\b", srv.output), srv.output  # the scenario happened
