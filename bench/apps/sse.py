"""GET /sse?n=N -> a server-sent event stream of N events, each its own ``http.response.body`` message.

Every event is ``data: <counter>\\n\\n`` with the counter zero-padded to 10 digits (18 bytes; 24 on the wire with
chunked framing), sent with ``more_body=True`` and followed by ``await asyncio.sleep(0)``: one event per loop turn,
as fast as the loop allows, and no stream can hog the loop. The stream stops early when the client goes away
(``http.disconnect``, watched by a second task as Starlette's StreamingResponse does, or a failed ``send``), so no
server keeps generating for a departed client. Any other path answers a 13-byte text/plain body (the suite's
readiness probe asks for ``/``).
"""

import asyncio

SSE_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
}
END = {"type": "http.response.body", "body": b"", "more_body": False}
PLAIN_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
PLAIN_BODY = {"type": "http.response.body", "body": b"Hello, world!"}
DEFAULT_EVENTS = 100


def _events(query: bytes) -> int:
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"n" and value.isdigit():
            return int(value)
    return DEFAULT_EVENTS


async def _until_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    if scope["path"] != "/sse":
        await send(PLAIN_START)
        await send(PLAIN_BODY)
        return
    n = _events(scope["query_string"])
    gone = asyncio.ensure_future(_until_disconnect(receive))
    sleep = asyncio.sleep
    try:
        await send(SSE_START)
        for i in range(n):
            if gone.done():
                return
            await send({"type": "http.response.body", "body": b"data: %010d\n\n" % i, "more_body": True})
            await sleep(0)
        await send(END)
    except OSError:  # the client went away while a send was in flight (servers differ in what they raise)
        return
    finally:
        gone.cancel()
