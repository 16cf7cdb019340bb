"""An asyncio.Lock / Semaphore in a module global, shared by routes that run on different loops, under
concurrency (issue 21). Waiters on one loop woken from another work (hybrid/loops.py); waiters on two loops at
once cannot share asyncio's loop-bound object: that fails loudly (a 500, asyncio's error naming the object and
hybrid's explanation once), never a hang and never two holders. uvicorn and --mode async: every request 200."""

import threading

import httpx
import pytest

from hybrid.asgi.errors import CROSS_LOOP_HINT

from .crossloop import Uvicorn
from .support import Server

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.crossloop_lock:app"
CLIENTS = 8
REQUESTS = 40  # per client, alternating between the serving thread's loop and the pool's


def hammer(base_url: str, kind: str) -> list[int]:
    """CLIENTS threads, each REQUESTS requests; returns every status (a request unanswered in 5 s fails)."""
    statuses: list[int] = []
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=5.0) as c:
                for i in range(REQUESTS):
                    path = f"/pool/{kind}" if (i + n) % 2 else f"/{kind}"
                    statuses.append(c.get(path).status_code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors  # a hang shows as a ReadTimeout here
    assert len(statuses) == CLIENTS * REQUESTS
    return statuses


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
def test_shared_lock_across_loops(kind):
    with Uvicorn(APP) as srv:
        assert set(hammer(srv.url, kind)) == {200}
    with Server(APP, "--port", "0", "--no-access-log", "--mode", "async") as srv:
        assert set(hammer(srv.url, kind)) == {200}
    with Server(APP, "--port", "0", "--no-access-log", "--async-path", "/pool/*") as srv:
        statuses = hammer(srv.url, kind)
        assert 409 not in statuses  # never two holders of a lock
        assert set(statuses) <= {200, 500}, sorted(set(statuses))
        failures = statuses.count(500)
        out = srv.output
    assert statuses.count(200) > 0
    if failures:  # waiters on both loops at once: loud, at the first one, explained once
        assert out.count("Exception in ASGI application") == failures, out[-3000:]
        assert out.count("> is bound to a different event loop") == failures, out[-3000:]  # (the object named)
        assert out.count(CROSS_LOOP_HINT[:60]) == 1, out[-3000:]
    print(f"{kind}: {failures} of {len(statuses)} requests failed loudly (waiters on two loops at once)")
