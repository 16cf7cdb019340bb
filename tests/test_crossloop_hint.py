"""An app that keeps asyncio objects in module globals fails when a request lands on another loop; the server log
then explains it, in plain words, once per process (hybrid/asgi/errors.py)."""

import asyncio

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from hybrid.asgi.errors import CROSS_LOOP_HINT, is_cross_loop_error

from .support import Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.crossloop:app"
HINT_START = CROSS_LOOP_HINT[:60]


def _wait_output(srv, text, count, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while srv.output.count(text) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return srv.output.count(text)


def test_cross_loop_error_over_http_is_explained_once():
    with Server(APP, "--port", "0", "--no-access-log", "--async-path", "/pool/*") as srv:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            r = c.get("/wait")  # binds EVENT to the serving thread's loop
            assert r.status_code == 200 and r.text.startswith("hybrid-worker-"), r.text
            for i in range(3):  # the pool's loop: asyncio refuses, the app fails
                r = c.get("/pool/wait")
                assert r.status_code == 500, (r.status_code, r.text)
                assert _wait_output(srv, "Exception in ASGI application", i + 1) == i + 1, srv.output
            assert c.get("/wait").status_code == 200  # the worker loop, EVENT's own, still works
        out = srv.output
    assert "is bound to a different event loop" in out, out
    assert out.count(HINT_START) == 1, out  # said once, not once per failure
    assert "lifespan" in out and "--async-path" in out and "--mode async" in out
    # The hint follows the first failure's traceback.
    assert out.index(HINT_START) > out.index("is bound to a different event loop")


def test_cross_loop_error_in_websocket_is_explained():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            assert c.get("/wait").status_code == 200
        host, port = srv.addr
        with ws_connect(f"ws://{host}:{port}/ws", open_timeout=5, close_timeout=2) as ws:
            with pytest.raises(Exception) as info:  # the app fails after accepting: closed with 1011
                ws.recv(timeout=5)
        assert getattr(info.value, "rcvd", None) is not None and info.value.rcvd.code == 1011, repr(info.value)
        assert _wait_output(srv, HINT_START, 1) == 1, srv.output


def test_other_errors_get_no_hint():
    with Server("tests.apps.fastapi_app:app", "--port", "0", "--no-access-log") as srv:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            assert c.get("/boom").status_code == 500
        assert _wait_output(srv, "Exception in ASGI application", 1) == 1, srv.output
    assert HINT_START not in srv.output


def test_recognised_shapes():
    """The markers are asyncio's own words (Python 3.11+), found through chains and exception groups."""

    async def bind(obj):
        try:
            await asyncio.wait_for(obj.get() if isinstance(obj, asyncio.Queue) else obj.wait(), 0.001)
        except TimeoutError:
            pass

    for make in (asyncio.Event, asyncio.Queue):
        obj = make()
        asyncio.run(bind(obj))
        with pytest.raises(RuntimeError) as info:
            asyncio.run(bind(obj))
        assert is_cross_loop_error(info.value), info.value

    async def foreign_future():
        return await other_loop_future

    other = asyncio.new_event_loop()
    try:
        other_loop_future = other.create_future()
        with pytest.raises(RuntimeError) as info:
            asyncio.run(foreign_future())
        assert is_cross_loop_error(info.value), info.value
    finally:
        other.close()

    err = RuntimeError("<asyncio.locks.Lock object> is bound to a different event loop")
    wrapped = ValueError("db failed")
    wrapped.__cause__ = err
    assert is_cross_loop_error(ExceptionGroup("tg", [KeyError("x"), wrapped]))
    assert not is_cross_loop_error(RuntimeError("Event loop is closed"))
    assert not is_cross_loop_error(ExceptionGroup("tg", [KeyError("x")]))
