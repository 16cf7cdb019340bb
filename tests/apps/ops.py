"""App for tests/test_ops.py: request ids as the app sees them, in a worker and in the async pool."""

import json
import logging
import os
import threading
import time

from tests.apps import plain_lifespan

CAPTURED: list = []


class _Capture(logging.Handler):
    def emit(self, record):
        CAPTURED.append([record.getMessage(), record.args.get("request_id"), record.args.get("where")])


SEEN: list = []  # [route, request id, thread] per run of the app


def _rid(scope) -> str:
    return scope["extensions"]["hybrid.request_id"]["id"]


async def _plain(send, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain"),
                                                                          *headers]})
    await send({"type": "http.response.body", "body": body})


async def _stream(send, parts=3) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(parts):
        await send({"type": "http.response.body", "body": b"part %d\n" % i, "more_body": i + 1 < parts})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
        return
    if scope["type"] == "websocket":  # echo until the client closes
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/seen":
        await _plain(send, json.dumps(SEEN).encode())
        return
    if path == "/capture-on":  # an app adding its own handler to the access logger at run time
        logging.getLogger("hybrid.access").addHandler(_Capture())
        await _plain(send, b"on")
        return
    if path == "/captured":
        await _plain(send, json.dumps(CAPTURED).encode())
        return
    SEEN.append([path, _rid(scope), threading.current_thread().name])
    if path == "/pid":  # which worker process answered (tests/test_metrics_workers.py)
        await _plain(send, str(os.getpid()).encode())
    elif path == "/id":
        await _plain(send, _rid(scope).encode())
    elif path == "/own-header":  # the app sets the id header itself: the server must not add a second one
        await _plain(send, b"own", [(b"X-Request-ID", b"from-the-app")])
    elif path in ("/stream", "/sse"):
        await _stream(send)
    elif path == "/sse-hold":  # an event stream that stays open until the client leaves
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type",
                                                                              b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
    elif path == "/block-long":  # blocks its thread long enough to be seen by a scrape
        time.sleep(1.5)
        await _plain(send, b"blocked")
    elif path == "/block":  # a blocking handler: the monitor hands its thread's set to a spare
        time.sleep(0.3)
        await _plain(send, b"blocked")
    elif path == "/read-body":  # waits for a body the client may never finish
        while True:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await _plain(send, b"read")
    elif path == "/fail":  # fails before its response: the server answers 500
        raise RuntimeError("failed before the response (intentional)")
    elif path == "/post-stream":
        while (await receive()).get("more_body"):
            pass
        await _stream(send)
    else:
        await _plain(send, b"ok")
