"""--gc-threshold: the youngest generation is collected after 10,000 net allocations, not 3.11's 700 nor 3.13's
2,000, in every server process, once the app is imported; an app's own gc.set_threshold wins
(hybrid/gc_policy.py).

Why it matters: with many requests in flight, each holding its objects across an await, a collection of the
youngest generation finds nothing to free and scans every live object (docs/performance.md)."""

import socket
import subprocess
import sys

import pytest

from .support import Server, run_cli

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.gc_threshold_app:app"
CONNECTIONS = 64
ROUNDS = 10  # requests per connection


def _interpreter_threshold() -> int:
    out = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return int(out)


def _threshold(srv) -> int:
    with srv.connect() as c:
        return int(c.request("GET", "/threshold").body)


def test_default_raises_the_young_threshold_to_10000():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        assert _threshold(srv) == max(10000, _interpreter_threshold())


def test_zero_leaves_the_interpreters_threshold():
    with Server(APP, "--port", "0", "--no-access-log", "--gc-threshold", "0") as srv:
        assert _threshold(srv) == _interpreter_threshold()


def test_an_apps_own_threshold_wins():
    with Server(APP, "--port", "0", "--no-access-log", env={"GC_APP_THRESHOLD": "123"}) as srv:
        assert _threshold(srv) == 123


@pytest.mark.parametrize("value", ["-1", "abc", "20000000"])
def test_bad_value_is_one_line_exit_2(value):
    rc, out = run_cli(APP, "--gc-threshold", value)
    lines = [line for line in out.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "--gc-threshold" in lines[0], out


def _young_collections_under_load(*args: str) -> int:
    """Young collections while CONNECTIONS clients each send ROUNDS requests, one in flight on each: every
    request holds its objects across an await, as a request that hops to a thread pool does."""
    with Server(APP, "--port", "0", "--no-access-log", *args) as srv:
        request = b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"
        socks = [socket.create_connection(srv.addr, timeout=10) for _ in range(CONNECTIONS)]
        try:
            with srv.connect() as c:
                c.request("GET", "/young")  # (startup's collections)
            for _ in range(ROUNDS):
                for s in socks:
                    s.sendall(request)
                for s in socks:
                    data = b""
                    while not data.endswith(b"\r\n\r\n40"):
                        chunk = s.recv(4096)
                        assert chunk, "the server closed a keep-alive connection"
                        data += chunk
            with srv.connect() as c:
                return int(c.request("GET", "/young").body)
        finally:
            for s in socks:
                s.close()


def test_fewer_young_collections_with_requests_in_flight():
    at_700 = _young_collections_under_load("--gc-threshold", "700")
    at_2000 = _young_collections_under_load("--gc-threshold", "2000")
    default = _young_collections_under_load()
    # 640 requests of ~50 container objects each, 64 in flight (~3,200 live at once): at 700 a collection every
    # ~14 requests, at 2000 5-9 in all (measured), at 10,000 (above what is in flight) none.
    assert at_700 >= 20, at_700
    assert at_2000 >= 3, at_2000
    assert default * 3 <= at_2000, (default, at_2000, at_700)
