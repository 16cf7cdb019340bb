"""The ASGI HTTP scope (spec 2.4), lifespan state in scope, asyncio and contextvars inside the app."""

import json
import socket
import time

import httpx
import pytest

from .support import Server

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.basic:app"


def B(s: str) -> dict:
    return {"__bytes__": s}


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--host", "127.0.0.1", "--port", "0") as srv:
        yield srv
        assert srv.alive(), srv.output


@pytest.fixture(scope="module")
def server1():
    """One worker thread: every request runs on the same thread/loop."""
    with Server(APP, "--host", "127.0.0.1", "--port", "0", "--threads", "1") as srv:
        yield srv
        assert srv.alive(), srv.output


def get_scope(server, target="/scope", method="GET", headers=(), body=b""):
    with server.connect() as c:
        r = c.request(method, target, headers=headers, body=body)
        assert r.status == 200, r
        return json.loads(r.body), c.sock.getsockname()


def test_scope_basic_fields(server):
    scope, (chost, cport) = get_scope(server, "/scope/a/b?x=1&y=2", "POST", [("X-Custom", "Value")], b"data")
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"]["spec_version"] == "2.4"
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/a/b"
    assert scope["raw_path"] == B("/scope/a/b")
    assert scope["query_string"] == B("x=1&y=2")
    assert scope["root_path"] == ""
    assert scope["client"] == ["127.0.0.1", cport]
    assert scope["server"] == ["127.0.0.1", server.port]


def test_scope_types(server):
    scope, _ = get_scope(server)
    t = scope["_types"]
    assert t["type"] == "str"
    assert t["method"] == "str"
    assert t["path"] == "str"
    assert t["raw_path"] == "bytes"
    assert t["query_string"] == "bytes"
    assert t["root_path"] == "str"
    assert t["http_version"] == "str"
    assert t["scheme"] == "str"
    assert t["headers"] in ("list", "tuple")
    assert t["client"] in ("list", "tuple")
    assert t["server"] in ("list", "tuple")
    assert t["state"] == "dict"
    assert scope["_header_types"] == [["bytes", "bytes"]]


def test_scope_path_percent_decoded_raw_path_not(server):
    scope, _ = get_scope(server, "/scope/a%20b/%C3%BC%2Fx?q=%20v")
    assert scope["path"] == "/scope/a b/ü/x"
    assert scope["raw_path"] == B("/scope/a%20b/%C3%BC%2Fx")
    assert scope["query_string"] == B("q=%20v")


def test_scope_empty_query(server):
    scope, _ = get_scope(server, "/scope")
    assert scope["query_string"] == B("")
    scope, _ = get_scope(server, "/scope?")
    assert scope["query_string"] == B("")
    assert scope["path"] == "/scope"


def test_scope_headers_lowercase_order_duplicates(server):
    scope, _ = get_scope(
        server,
        "/scope",
        headers=[("X-First", "A"), ("X-Dup", "1"), ("x-dup", "2"), ("X-UPPER", "MiXeD Value")],
    )
    headers = [(n["__bytes__"], v["__bytes__"]) for n, v in scope["headers"]]
    assert ("host", "localhost") in headers
    assert ("x-first", "A") in headers
    assert ("x-upper", "MiXeD Value") in headers
    dups = [v for n, v in headers if n == "x-dup"]
    assert dups == ["1", "2"]
    assert headers.index(("x-first", "A")) < headers.index(("x-dup", "1"))
    assert all(n == n.lower() for n, _ in headers)


def test_scope_method_variants(server):
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        scope, _ = get_scope(server, "/scope", method)
        assert scope["method"] == method


def test_scope_http10(server):
    with server.connect() as c:
        c.send(b"GET /scope HTTP/1.0\r\n\r\n")
        scope = json.loads(c.read_response().body)
    assert scope["http_version"] == "1.0"


def test_scope_state_from_lifespan(server):
    scope, _ = get_scope(server)
    assert scope["state"].get("started") is True


def test_state_is_shallow_copy(server1):
    with httpx.Client(base_url=server1.url, timeout=5) as c:
        first = c.get("/state?v=one").json()
        second = c.get("/state?v=two").json()
    assert first["before"]["started"] is True
    assert "added_by_request" not in first["before"]
    assert "added_by_request" not in second["before"], "keys added to scope['state'] must not leak"
    # a shallow copy: the mutable values are the lifespan's own objects, shared by requests on the same loop
    if first["loop_id"] == second["loop_id"]:
        assert len(second["before"]["shared_list"]) == len(first["before"]["shared_list"]) + 1


def test_state_belongs_to_serving_loop(server):
    """scope['state'] is the state of the loop serving the request (lifespan ran in that loop)."""
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for _ in range(10):
            r = c.get("/state").json()
            assert r["before"]["loop_id"] == r["loop_id"]


# ---------------------------------------------------------------------------------------------------------
# asyncio inside the app
# ---------------------------------------------------------------------------------------------------------
def test_asyncio_inside_app(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.get("/asyncio").json()
    assert r["loop"] and r["loop_running"]
    assert r["current_task"] is True
    assert r["timeout"] == "TimeoutError" and r["timeout_elapsed"] < 1.0
    assert r["wait_for"] == "TimeoutError" and r["wait_for_elapsed"] < 1.0
    assert r["cancel"] == "CancelledError"
    assert r["task_not_cancelled"] is True
    assert r["gather_elapsed"] < 0.2, "gathered sleeps run concurrently"
    assert r["executor"] == 42
    assert r["child_ctx"] == "parent"


def test_asyncio_sleep_in_handler(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        t0 = time.monotonic()
        r = c.get("/asleep?t=0.2")
        elapsed = time.monotonic() - t0
    assert r.status_code == 200 and r.text == "aslept"
    assert 0.19 <= elapsed < 2


def test_background_task_keeps_running_between_requests(server1):
    with httpx.Client(base_url=server1.url, timeout=5) as c:
        before = c.get("/bg-check").json()["done"]
        assert c.get("/bg-start?t=0.2").json() == {"started": True}
    time.sleep(0.8)  # no requests meanwhile: the worker's loop must still run the app's task
    with httpx.Client(base_url=server1.url, timeout=5) as c:
        assert c.get("/bg-check").json()["done"] == before + 1


def test_contextvars_do_not_leak_same_connection(server1):
    with server1.connect() as c:
        threads = set()
        for i in range(10):
            r = json.loads(c.request("GET", f"/ctx?v=req{i}").body)
            assert r["before"] is None, f"request {i} saw a context value from an earlier request: {r}"
            threads.add(r["thread"])
    assert len(threads) == 1


def test_contextvars_do_not_leak_across_connections(server1):
    for i in range(5):
        with server1.connect() as c:
            r = json.loads(c.request("GET", f"/ctx?v=conn{i}").body)
            assert r["before"] is None


def test_contextvars_do_not_leak_pipelined(server1):
    from .support import build_request

    with server1.connect() as c:
        c.send(b"".join(build_request("GET", f"/ctx?v=p{i}") for i in range(5)))
        for _ in range(5):
            assert json.loads(c.read_response().body)["before"] is None


def test_client_address_differs_per_connection(server):
    ports = set()
    for _ in range(3):
        s, (h, p) = get_scope(server)
        ports.add(s["client"][1])
        assert s["client"][1] == p
    assert len(ports) == 3


def test_ipv4_server_tuple(server):
    scope, _ = get_scope(server)
    host, port = scope["server"]
    socket.inet_aton(host)
    assert port == server.port


def test_scope_mutation_does_not_reach_next_request(server):
    """Each request's scope is a fresh dict (Connection keeps a per-connection template and copies it): an app
    that overwrites every entry and adds one leaves the next request on the same connection untouched."""
    with server.connect() as c:
        first = c.request("GET", "/scope/x?q=1")
        assert first.status == 200, first
        r = c.request("GET", "/scope-mutate")
        assert r.status == 200 and r.body == b"mutated", r
        after = c.request("GET", "/scope/x?q=1")
        assert after.status == 200, after
        port = c.sock.getsockname()[1]
    before, again = json.loads(first.body), json.loads(after.body)
    assert "added" not in again
    for key in ("type", "asgi", "http_version", "server", "client", "scheme", "method", "root_path", "path",
                "raw_path", "query_string", "_types"):
        assert again[key] == before[key], key
    assert sorted(again["extensions"]) == sorted(before["extensions"])  # (the request id differs per request)
    assert again["client"][1] == port
