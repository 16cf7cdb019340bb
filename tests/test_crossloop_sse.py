"""Publish/subscribe across hybrid's loops (issue 21): a POST route on a serving thread wakes SSE streams awaiting
a module-global Queue or Event in the async pool, as fast as under uvicorn (tests/crossloop.py)."""

from functools import partial

import pytest

from .crossloop import HYBRID, Uvicorn, compare, http_publisher, measure, running, sse_subscriber
from .support import Server

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(("stream", "publish"), [
    ("/events", "/publish/"),        # Starlette StreamingResponse awaiting an asyncio.Queue
    ("/sse", "/publish/"),           # sse-starlette's EventSourceResponse, the same Queue
    ("/event-stream", "/event/"),    # an asyncio.Event set by the POST route
])
def test_publish_to_sse_subscribers(stream, publish):
    with running(Uvicorn(), Server(*HYBRID), Server(*HYBRID, "--mode", "async")) as (uv, ours, one_loop):
        theirs, default, single = measure([uv, ours, one_loop], sse_subscriber, stream,
                                          partial(http_publisher, path=publish))
    compare(f"SSE {stream}", default, theirs)
    compare(f"SSE {stream}, --mode async", single, theirs)  # one loop: nothing crosses, and it still works
