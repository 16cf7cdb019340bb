"""Lifespan-made async resources (an httpx.AsyncClient, an asyncio.Lock-guarded cache) under concurrent load on
every loop that runs app code: the serving thread, spares (also one started after a takeover), the async pool.
App: tests/apps/fastapi_shared.py; its upstream is a small HTTP/1.1 server in this process, on 127.0.0.1."""

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from .support import Server

pytestmark = pytest.mark.timeout(90)

CLIENTS = 8
REQUESTS = 50
KEYS = 6


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the app's client reuses pooled connections

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/v/"):
            time.sleep(0.005)  # slow enough that the cache lock is contended
            body = f"value-{self.path[3:]}".encode()
        else:
            body = b"pong"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _load(url, results, errors, paths, pause):
    try:
        with httpx.Client(base_url=url, timeout=15) as c:
            for i in range(REQUESTS):
                path = paths[i % len(paths)].format(key=i % KEYS)
                r = c.get(path)
                if r.status_code != 200:
                    errors.append((path, r.status_code, r.text[:200]))
                    continue
                results.append((path, r.json()))
                time.sleep(pause)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(repr(exc))


def _spawn(url, results, errors, paths, pause=0.01):
    threads = [threading.Thread(target=_load, args=(url, results, errors, paths, pause)) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    return threads


def _check(results):
    for path, body in results:
        key = path.rsplit("/", 1)[1]
        assert body["value"] == f"value-{key}" and body["pong"] == "pong" and body["loop_matches"] is True, body


def test_lifespan_resources_under_load_on_every_loop(upstream):
    with Server("tests.apps.fastapi_shared:app", "--port", "0", "--no-access-log", "--async-path", "/pool/*",
                env={"UPSTREAM": upstream}) as srv:
        # 1. Load on the serving thread and the pool while handlers block: takeovers move the set to spares,
        # and each takeover starts a new spare.
        results, errors = [], []
        clients = _spawn(srv.url, results, errors, ["/fetch/{key}", "/pool/fetch/{key}"], pause=0.01)
        # Three handlers blocked at once (each on its own connection): each takeover needs a thread no handler
        # holds, so the last owner is a spare started after a takeover. (One after another, a thread whose
        # handler returned is a spare again and may take the set back: owners would ping-pong between two.)
        blocked = []

        def block():
            with httpx.Client(base_url=srv.url, timeout=15) as c:
                blocked.append(c.get("/block?t=0.5").json()["thread"])

        blockers = [threading.Thread(target=block) for _ in range(3)]
        for b in blockers:
            b.start()
            time.sleep(0.05)  # one at a time into the set, each blocking the thread that owns it by then
        for b in blockers:
            b.join(15)
        for t in clients:
            t.join(60)
        assert not errors, errors[:5]
        assert len(results) == CLIENTS * REQUESTS
        _check(results)
        worker_threads = {b["thread"] for p, b in results if p.startswith("/fetch/")}
        pool_threads = {b["thread"] for p, b in results if p.startswith("/pool/")}
        assert pool_threads == {"hybrid-async-pool"}, pool_threads
        assert all(t.startswith("hybrid-worker-") for t in worker_threads), worker_threads
        assert len(worker_threads) >= 2, f"no takeover moved the load to a spare: {worker_threads}, {blocked}"

        # 2. Right after those takeovers: the set's owner now is a thread started by a takeover (its lifespan
        # ran when it started); the same load, on it.
        results, errors = [], []
        for t in _spawn(srv.url, results, errors, ["/fetch/{key}"], pause=0):
            t.join(60)
        assert not errors, errors[:5]
        assert len(results) == CLIENTS * REQUESTS
        _check(results)
        # A thread started by a takeover (worker-2 on: 0 serves first, 1 is the spare started with it) has served
        # part of this load (phase 1 or 2) with its own lifespan's client and lock. Which thread owns the set by
        # phase 2 is not fixed: a later takeover hands it to the first free spare, which may be an old one.
        owners = {b["thread"] for _, b in results} | worker_threads
        numbers = {int(re.sub(r"\D", "", t)) for t in owners}
        assert max(numbers) >= 2, f"served by {owners}: never by a spare started after a takeover"
        assert srv.stop() == 0, srv.output
    assert "Exception in ASGI application" not in srv.output, srv.output
    takeovers = int(re.search(r"(\d+) takeovers?\b", srv.output).group(1))
    assert takeovers >= 3, srv.output
