"""An app still running after its response is complete (BackgroundTasks): the keep-alive connection serves the
next request at once, the app's later error is logged, and shutdown waits for it (hybrid/connection.py
Connection._release)."""

import time

import pytest

from .support import Server

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("path", ["/inline", "/later", "/later-fail"])
def test_next_request_does_not_wait_for_the_app_to_return(path):
    with Server("tests.apps.after_response:app", "--port", "0", "--no-access-log") as srv:
        with srv.connect() as c:
            started = time.monotonic()
            r = c.request("GET", f"{path}?t=1.0")
            assert (r.status, r.body) == (200, b"answered")
            r = c.request("GET", "/done")  # same connection
            took = time.monotonic() - started
            assert (r.status, r.body) == (200, b"0"), r.body  # the first app still sleeps
            assert took < 0.5, f"the next request on the connection waited {took:.2f} s for the first app"
            deadline = time.monotonic() + 5
            while c.request("GET", "/done").body != b"1":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        if path == "/later-fail":
            deadline = time.monotonic() + 3
            while "failed after the response" not in srv.output and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "Exception in ASGI application" in srv.output and "failed after the response" in srv.output
        assert srv.stop() == 0
