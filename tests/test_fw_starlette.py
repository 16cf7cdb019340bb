"""Starlette on hybrid, end to end: routing, StaticFiles with a 20 MB file (whole, HEAD, Range, conditional),
a WebSocketEndpoint and lifespan state. App: tests/apps/starlette_app.py."""

import hashlib
import os
import threading

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from .support import Server

pytestmark = pytest.mark.timeout(90)

BIG = 20 << 20


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    data = os.urandom(BIG)
    (root / "big.bin").write_bytes(data)
    (root / "hello.txt").write_text("hello static\n")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("<h1>index</h1>")
    return root, data


@pytest.fixture(scope="module")
def server(static):
    root, _ = static
    with Server("tests.apps.starlette_app:app", "--port", "0", "--no-access-log",
                env={"STATIC_DIR": str(root)}) as srv:
        yield srv
        assert srv.alive(), srv.output


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_routing(client, server):
    assert client.get("/").text == "home"
    assert client.get("/users/42").json() == {"user_id": 42, "url": f"{server.url}/users/7"}
    assert client.get("/users/abc").status_code == 404  # the int converter does not match
    assert client.get("/files/a/b/c.txt").json() == {"rest": "a/b/c.txt"}
    assert client.get("/api/ping").text == "pong"
    r = client.get("/go")
    assert r.status_code == 307 and r.headers["location"] == f"{server.url}/"
    assert client.get("/items").json() == {"method": "GET"}
    assert client.post("/items", json={"a": [1, 2]}).json() == {"method": "POST", "json": {"a": [1, 2]}}
    r = client.delete("/items")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    assert client.get("/nowhere").status_code == 404
    assert client.post("/form", data={"a": "1", "b": "two"}).json() == {"a": "1", "b": "two"}


def test_lifespan_state_is_the_serving_loops(client):
    body = client.get("/state?v=abc").json()
    assert body["name"] == "starlette-test" and body["got"] == "abc" and body["loop_matches"] is True, body


def test_static_small_and_index(client):
    r = client.get("/static/hello.txt")
    assert r.status_code == 200 and r.text == "hello static\n"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["content-length"] == "13"
    assert client.get("/static/missing.txt").status_code == 404
    assert client.get("/static/../starlette_app.py").status_code == 404  # no escaping the directory


def test_static_20mb_file(client, static):
    _, data = static
    with client.stream("GET", "/static/big.bin") as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(BIG)
        assert "transfer-encoding" not in r.headers
        digest, size = hashlib.sha256(), 0
        for chunk in r.iter_raw():
            digest.update(chunk)
            size += len(chunk)
    assert size == BIG and digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_static_20mb_file_raw_framing_and_keep_alive(server, static):
    """On the wire: exactly Content-Length bytes, then the connection serves the next request."""
    _, data = static
    with server.connect(timeout=30) as c:
        r = c.request("GET", "/static/big.bin")
        assert r.status == 200 and not r.chunked and len(r.body) == BIG and r.body == data
        assert c.request("GET", "/static/hello.txt").body == b"hello static\n"


def test_static_head_and_conditional(client):
    r = client.head("/static/big.bin")
    assert r.status_code == 200 and r.headers["content-length"] == str(BIG) and r.content == b""
    etag = r.headers["etag"]
    r = client.get("/static/big.bin", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""


def test_static_range_requests(client, static):
    _, data = static
    r = client.get("/static/big.bin", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-199/{BIG}"
    assert r.headers["content-length"] == "100" and r.content == data[100:200]
    r = client.get("/static/big.bin", headers={"Range": f"bytes={BIG - 5000000}-"})  # a large open-ended tail
    assert r.status_code == 206 and r.content == data[-5000000:]
    r = client.get("/static/big.bin", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = client.get("/static/big.bin", headers={"Range": "bytes=0-9,20-29"})  # multipart/byteranges
    assert r.status_code == 206 and r.headers["content-type"].startswith("multipart/byteranges")
    assert data[0:10] in r.content and data[20:30] in r.content
    r = client.get("/static/big.bin", headers={"Range": f"bytes={BIG + 10}-"})
    assert r.status_code == 416


def test_static_concurrent_downloads(server, static):
    _, data = static
    want = hashlib.sha256(data).hexdigest()
    results = []

    def get():
        try:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                r = c.get("/static/big.bin")
                results.append((r.status_code, hashlib.sha256(r.content).hexdigest()))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(repr(exc))

    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [(200, want)] * 4, results


def test_websocket_endpoint(server):
    host, port = server.addr
    with ws_connect(f"ws://{host}:{port}/ws", open_timeout=5, close_timeout=2) as ws:
        import json

        hello = json.loads(ws.recv(timeout=5))
        assert hello == {"state": "starlette-test", "thread": "hybrid-async-pool"}
        ws.send(json.dumps({"n": 1}))
        assert json.loads(ws.recv(timeout=5)) == {"echo": {"n": 1}, "path": "/ws"}
        ws.send(json.dumps({"close": True}))
        with pytest.raises(Exception) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd.code == 4000
