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


def test_closed_connections_leave_no_cycles():
    # The httptools parser calls its protocol's bound methods: protocol and parser refer to each other, so a
    # closed connection's pair was freed only by a collection (12 objects per connection).
    with Server("tests.apps.gc_app:app", "--port", "0", "--no-access-log", "--lifespan", "off") as srv:
        with RawClient(srv.addr) as c:
            assert c.request("GET", "/collect").status == 200  # startup's garbage
        for i in range(40):
            with RawClient(srv.addr) as c:
                if i % 2:  # the server closes (connection: close) or the client does
                    assert c.request("GET", "/inline", headers=[("Connection", "close")]).status == 200
                else:
                    assert c.request("GET", "/inline").status == 200
        with RawClient(srv.addr) as c:
            found = int(c.request("GET", "/collect").body)
        assert found < 50, f"{found} unreachable objects after 40 closed connections"
