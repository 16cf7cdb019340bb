"""An app that has read its whole body and waits in receive() for http.disconnect: Django does it beside every
view (ASGIHandler's listen_for_disconnect). Such a connection stays in its epoll set (``Connection.want_read``):
taking it out for its loop to read cost four epoll_ctl per request. Its set reports an EOF or pipelined bytes,
and ``leave_set`` then gives the socket to the loop, so a client that leaves still cancels the view."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from tests.straced import TracedServer, strace_works
from tests.support import Server, build_request

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.django_site.asgi:application"
VIEW_WAIT = 30  # seconds the view would wait if the client's leaving were not seen
N = 30  # requests counted for epoll_ctl


def _waited(srv: Server) -> dict:
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        return c.get("/waited/").json()


def _state_after(srv: Server, rid: str, leaving: str, timeout: float = 5.0) -> str | None:
    """The wait/ view's state once it is no longer ``leaving`` (or after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = _waited(srv).get(rid)
        if state is not None and state != leaving:
            return state
        time.sleep(0.05)
    return state


@pytest.fixture(scope="module")
def server():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        yield srv
        assert srv.alive(), srv.output


@pytest.mark.parametrize("pipelined", [False, True], ids=["eof", "pipelined-then-eof"])
def test_a_client_that_leaves_cancels_the_waiting_django_view(server, pipelined):
    rid = uuid.uuid4().hex
    with server.connect(timeout=10) as c:
        c.send(build_request("POST", f"/wait/?id={rid}&t={VIEW_WAIT}", body=b'{"n": 1}',
                             headers=[("Content-Type", "application/json")]))
        assert _state_after(server, rid, leaving="") == "waiting"
        if pipelined:  # readable in its set while the view waits: the loop reads it, then sees the EOF
            c.send(build_request("GET", "/"))
            time.sleep(0.2)
        left = time.monotonic()
    # Django cancels the view when its receive() gives http.disconnect; unseen, the view waits VIEW_WAIT s.
    assert _state_after(server, rid, leaving="waiting") == "cancelled"
    assert time.monotonic() - left < 5
    with httpx.Client(base_url=server.url, timeout=10) as c:  # and the server goes on
        assert c.get("/").text == "django index"


@pytest.mark.skipif(not strace_works(), reason="strace missing or not allowed to trace here")
def test_a_django_request_costs_no_epoll_ctl(tmp_path):
    trace = tmp_path / "strace.txt"
    # (--blocking-threshold: strace slows every step; a takeover would move connections between sets)
    srv = TracedServer(trace, "epoll_ctl", APP, "--port", "0", "--no-access-log", "--blocking-threshold", "30")
    srv.start(timeout=60)
    try:
        with srv.connect(timeout=30) as c:
            for i in range(N):
                rid = f"count-{i}"
                r = c.request("POST", f"/wait/?id={rid}", body=b'{"n": 1}',
                              headers=[("Content-Type", "application/json")])
                assert (r.status, r.body) == (200, b"waited")
            port = c.sock.getsockname()[1]
            calls = [line for line in trace.read_text().splitlines()
                     if re.search(r"epoll_ctl\(.*->127\.0\.0\.1:" + str(port) + r"\]>", line)]
    finally:
        srv.stop_traced()
        srv.stop()
    # One: the connection joining its set at accept. Taken out of the set and watched by the loop for each
    # request's disconnect, it was 4 a request.
    assert len(calls) <= 2, f"{len(calls)} epoll_ctl on the connection for {N} requests:\n" + "\n".join(calls[:8])
