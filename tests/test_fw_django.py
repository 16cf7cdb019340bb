"""Django on hybrid through its ASGI application (tests/apps/django_site/asgi.py), as a user deploys it: sync and
async views, path converters, a JSON POST, streaming responses, an exception, static files
(django.contrib.staticfiles' ASGIStaticFilesHandler, a 5 MB file among them), Django Channels consumers (async
with an in-memory channel layer group, and sync)."""

import asyncio
import hashlib
import json
import os
import time

import httpx
import pytest
import websockets

from .support import Server

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.django_site.asgi:application"
BIG = 5 << 20


@pytest.fixture(scope="module")
def extra_static(tmp_path_factory):
    root = tmp_path_factory.mktemp("django-static")
    data = os.urandom(BIG)
    (root / "big.bin").write_bytes(data)
    return root, data


@pytest.fixture(scope="module")
def server(extra_static):
    root, _ = extra_static
    with Server(APP, "--port", "0", env={"DJANGO_EXTRA_STATIC": str(root)}) as srv:
        yield srv
        assert srv.alive(), srv.output


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_lifespan_unsupported_is_fine(server):
    """Django's ASGI application has no lifespan: with --lifespan auto the server says so and serves."""
    before = server.output.split("Listening on")[0]
    assert "ASGI 'lifespan' protocol appears unsupported." in before and "Traceback" not in before, server.output


def test_views(client, server):
    r = client.get("/")
    assert (r.status_code, r.text) == (200, "django index")
    assert r.headers["x-content-type-options"] == "nosniff"  # SecurityMiddleware ran
    body = client.get("/async/?q=z").json()
    assert body["async"] is True and body["q"] == "z" and body["path"] == "/async/"
    assert client.get("/items/12/").json() == {"pk": 12, "method": "GET", "host": f"127.0.0.1:{server.port}"}
    assert client.get("/items/x/").status_code == 404
    r = client.get("/items/12")  # CommonMiddleware: APPEND_SLASH redirect
    assert r.status_code == 301 and r.headers["location"] == "/items/12/"
    r = client.head("/")
    assert r.status_code == 200 and r.content == b""


def test_json_post(client):
    payload = {"name": "ünïcode", "values": list(range(1000))}
    r = client.post("/echo/", json=payload)
    assert r.status_code == 200
    assert r.json()["echo"] == payload and r.json()["content_type"] == "application/json"
    assert client.get("/echo/").status_code == 405


def test_disallowed_host(server):
    with server.connect() as c:
        r = c.request("GET", "/", headers=[("Host", "evil.example")])
        assert r.status == 400


def test_exception_gives_500_and_is_logged(client, server):
    r = client.get("/boom/")
    assert r.status_code == 500
    assert client.get("/").status_code == 200  # still serving, same connection
    deadline = time.monotonic() + 3
    while "django view boom" not in server.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "django view boom" in server.output  # Django's own logger (django.request) reports it


def test_async_streaming_response(client):
    arrivals = []
    with client.stream("GET", "/stream/?n=5") as r:
        assert r.status_code == 200 and "content-length" not in r.headers
        for line in r.iter_lines():
            if line:
                arrivals.append(line)
    assert arrivals == [f"part {i}" for i in range(5)]


def test_sync_streaming_response(client):
    r = client.get("/sync-stream/")
    assert r.status_code == 200
    assert r.text == "".join(f"line {i}\n" for i in range(1000))


def test_static_files(client, extra_static):
    r = client.get("/static/css/site.css")
    assert r.status_code == 200 and r.text == "body { color: teal; }\n"
    assert r.headers["content-type"].startswith("text/css")
    _, data = extra_static
    r = client.get("/static/big.bin")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(BIG)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert client.get("/static/nope.css").status_code == 404


def test_channels_group_broadcast(server):
    host, port = server.addr

    async def main():
        url = f"ws://{host}:{port}/ws/room/lobby/"
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            joined = [json.loads(await a.recv()), json.loads(await b.recv())]
            await a.send(json.dumps({"text": "hi all"}))
            got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for ws in (a, b)]
            return joined, got

    joined, got = asyncio.run(asyncio.wait_for(main(), 20))
    assert [j["joined"] for j in joined] == ["lobby", "lobby"]
    assert {j["thread"] for j in joined} == {"hybrid-async-pool"}
    assert got == [{"room": "lobby", "text": "hi all"}] * 2


def test_channels_sync_consumer(server):
    host, port = server.addr

    async def main():
        async with websockets.connect(f"ws://{host}:{port}/ws/echo/") as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x01\x02\x03")
            data = await ws.recv()
            await ws.send("bye")
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            return text, data, info.value.rcvd.code

    assert asyncio.run(asyncio.wait_for(main(), 20)) == ("sync echo: hello", b"\x03\x02\x01", 4002)


def test_unknown_websocket_route_is_refused(server):
    host, port = server.addr

    async def main():
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(f"ws://{host}:{port}/ws/nowhere/"):
                pass
        return info.value.response.status_code

    assert asyncio.run(asyncio.wait_for(main(), 20)) in (403, 500)
