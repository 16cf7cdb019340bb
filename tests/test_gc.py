"""Requests leave no cyclic garbage: a full collection in a serving thread stalls every connection it owns (the
monitor does not count it as a blocked handler, docs/threading.md, but the clients still wait), so what each
request allocates must be freed by reference counting alone."""

from .support import RawClient, Server


def test_requests_that_await_and_that_finish_inline_leave_no_cycles():
    with Server("tests.apps.gc_app:app", "--port", "0", "--no-access-log", "--lifespan", "off") as srv, \
            RawClient(srv.addr) as c:
        assert c.request("GET", "/collect").status == 200  # startup's garbage
        for path in ("/await", "/inline"):
            for _ in range(200):
                assert c.request("GET", path).status == 200
            r = c.request("GET", "/collect")
            # A few objects may come from the runtime (the collect request's own frames are not garbage yet); a
            # cycle per request would show as hundreds.
            assert int(r.body) < 50, f"{path}: {int(r.body)} unreachable objects after 200 requests"
