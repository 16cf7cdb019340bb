"""A FastAPI application: functional checks and isolation of blocking `def` / `async def` endpoints."""

import threading
import time

import httpx
import pytest

from .support import RawClient, Server
from .test_threads import _isolation_check

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.fastapi_app:app"


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        yield srv
        assert srv.alive(), srv.output


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_async_endpoint(client):
    r = client.get("/fast")
    assert r.status_code == 200
    assert r.json() == {"fast": True}
    assert r.headers["content-type"] == "application/json"


def test_sync_endpoint_runs_in_threadpool(client):
    r = client.get("/sync-fast")
    assert r.status_code == 200
    assert r.json()["sync"] is True


def test_path_query_dependency(client):
    r = client.get("/items/42?q=hello&limit=5")
    assert r.json() == {"item_id": 42, "q": "hello", "limit": 5}


def test_validation_error_422(client):
    r = client.get("/items/not-an-int")
    assert r.status_code == 422
    assert r.json()["detail"]


def test_json_body(client):
    r = client.post("/items", json={"name": "widget", "price": 2.5, "tags": ["a", "b"]})
    assert r.status_code == 200
    assert r.json() == {"name": "widget", "price": 2.5, "tags": ["a", "b"], "total": 5.0}


def test_json_body_invalid(client):
    r = client.post("/items", json={"name": "widget"})
    assert r.status_code == 422


def test_sync_put_with_body(client):
    r = client.put("/items/7", json={"name": "x", "price": 1})
    assert r.json() == {"item_id": 7, "name": "x"}


def test_http_exception(client):
    r = client.get("/missing")
    assert r.status_code == 404
    assert r.json() == {"detail": "nope"}


def test_header_param(client):
    assert client.get("/header", headers={"X-Token": "tok"}).json() == {"x_token": "tok"}
    assert client.get("/header").status_code == 422


def test_lifespan_state(client):
    assert client.get("/state").json() == {"db": "connected"}


def test_plain_text(client):
    r = client.get("/text")
    assert r.text == "plain text"
    assert r.headers["content-type"].startswith("text/plain")


def test_streaming_response(client):
    with client.stream("GET", "/stream") as r:
        assert r.status_code == 200
        body = b"".join(r.iter_bytes())
    assert body == b"".join(b"chunk%d\n" % i for i in range(5))


def test_background_task(client):
    before = client.get("/bg-count").json()["count"]
    assert client.post("/bg").json() == {"scheduled": True}
    deadline = time.monotonic() + 3
    while client.get("/bg-count").json()["count"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/bg-count").json()["count"] == before + 1


def test_timeout_inside_endpoint(client):
    assert client.get("/timeout").json() == {"timeout": True}


def test_exception_gives_500(server, client):
    r = client.get("/boom")
    assert r.status_code == 500
    assert client.get("/fast").status_code == 200


def test_openapi_and_docs(client):
    assert client.get("/openapi.json").json()["info"]["title"]
    assert client.get("/docs").status_code == 200


def test_concurrent_sync_endpoints(server):
    errors = []

    def run():
        try:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                for _ in range(20):
                    assert c.get("/sync-fast").status_code == 200
                    assert c.get("/fast").status_code == 200
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    ts = [threading.Thread(target=run) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(50)
    assert not errors, errors


def test_isolation_def_endpoints_blocking(server):
    """8 plain `def` endpoints in time.sleep(1) (FastAPI's threadpool): async ones answer in 50 ms."""
    _isolation_check(server, "/def-block?t=1", fast_target="/fast")


def test_isolation_async_endpoints_blocking(server):
    """8 `async def` endpoints that call time.sleep(1) (blocking the loop): others answer within 50 ms."""
    _isolation_check(server, "/async-block?t=1", fast_target="/fast")


def test_isolation_sync_fast_while_blocked(server):
    """A plain `def` fast endpoint is also answered quickly while async endpoints block."""
    _isolation_check(server, "/async-block?t=1", fast_target="/sync-fast")


def test_async_sleep_endpoints_concurrent(server):
    with RawClient(server.addr) as _:
        pass
    from .test_threads import Sleepers

    sleepers = Sleepers(server.addr, 10, "/async-sleep?t=0.5")
    responses, total = sleepers.read()
    assert all(r.status == 200 for r in responses)
    assert total < 1.5
