"""HTTP/2 streams see ``scope["state"]``: a copy of the lifespan state of the loop their app runs on (a worker's,
or the pool's for a stream the pool runs: Accept text/event-stream), as over HTTP/1.1. The scope is built on the
pool before that choice, so the copy is made where the app starts (session._start, onworker.run_stream)."""

from __future__ import annotations

import json

import pytest

from tests.h2client import H2Client
from tests.support import Server

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("accept", [b"*/*", b"text/event-stream"], ids=["worker", "pool"])
def test_state_is_a_copy_of_the_running_loops_lifespan_state(accept):
    with Server("tests.apps.basic:app", "--port", "0", "--lifespan", "on") as srv:
        client = H2Client(("127.0.0.1", srv.port))
        try:
            seen = []
            for _ in range(2):
                headers, body = client.response(client.request("/state?v=1", headers=[(b"accept", accept)]))
                assert headers[b":status"] == b"200", body
                seen.append(json.loads(body))
        finally:
            client.close()
    for answer in seen:
        before = answer["before"]
        assert before is not None and before["started"] is True
        assert before["loop_id"] == answer["loop_id"]  # the state of the loop the app ran on
        assert "added_by_request" not in before  # a copy: the first request's key did not stay
