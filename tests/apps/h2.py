"""The app the HTTP/2 tests drive (tests/test_h2*.py): each route exercises one part of a stream's cycle."""

import asyncio
import json
import time

from tests.apps import plain_lifespan

CALLS = {"count": 0}
TAGGED: dict = {}  # /block-tagged runs by tag: how many calls, how each ended


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await plain_lifespan(receive, send)
    path = scope["path"]
    if path == "/scope":  # what the app sees of the request
        CALLS["count"] += 1
        body = json.dumps({
            "http_version": scope["http_version"], "method": scope["method"], "path": scope["path"],
            "query_string": scope["query_string"].decode(), "scheme": scope["scheme"],
            "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]], "calls": CALLS["count"],
            "client": scope["client"], "request_id": scope["extensions"]["hybrid.request_id"]["id"],
        }).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/scope-body":  # reads the whole body, then answers its size
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})
    elif path == "/echo":  # streams the request body back as it reads it, then its size
        await send({"type": "http.response.start", "status": 200, "headers": []})
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if message.get("body"):
                await send({"type": "http.response.body", "body": message["body"], "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":  # ?n bytes, sent in 64 KiB messages (flow control on the way out)
        n = int(scope["query_string"] or 1 << 20)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(n).encode())]})
        chunk = b"x" * 65536
        while n > 0:
            part = chunk[:n]
            n -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": n > 0})
    elif path == "/big-one":  # ?n bytes in one message (the pool frames it: 16 KiB frames, windows, the socket)
        n = int(scope["query_string"] or 1 << 20)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(n).encode())]})
        await send({"type": "http.response.body", "body": b"y" * n})
    elif path == "/sleep":  # ?seconds, awaiting
        if scope["query_string"] == b"1.01":  # (the shutdown test's cue: its request is in the app)
            print("h2 app: sleep 1.01 started", flush=True)
        await asyncio.sleep(float(scope["query_string"] or 1))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"slept"})
    elif path == "/block":  # ?seconds, blocking the thread (what HTTP/2 handlers must not do)
        time.sleep(float(scope["query_string"] or 0.5))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"blocked"})
    elif path == "/block-tagged":  # ?tag: blocks 2 s, then awaits; records that it ran and how it ended
        tag = scope["query_string"].decode()
        TAGGED[tag] = {"calls": TAGGED.get(tag, {}).get("calls", 0) + 1, "outcome": "blocking"}
        print(f"h2 app: block-tagged {tag} sleeps", flush=True)  # (the tests' cue, read from the server's output)
        time.sleep(2.0)
        try:
            await asyncio.sleep(0.2)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"blocked"})
            TAGGED[tag]["outcome"] = "answered"
        except asyncio.CancelledError:
            TAGGED[tag]["outcome"] = "cancelled"
            raise
        except Exception as exc:  # noqa: BLE001 - (what ended it is the test's answer)
            TAGGED[tag]["outcome"] = type(exc).__name__
    elif path == "/tagged":  # ?tag: what /block-tagged recorded
        body = json.dumps(TAGGED.get(scope["query_string"].decode())).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif path == "/sse":  # ?n events, one every 50 ms (over HTTP/1.1 with Accept: text/event-stream: the pool)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(int(scope["query_string"] or 10)):
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/until-disconnect":  # ?tag: reads the request, waits for http.disconnect, then tries to send
        tag = scope["query_string"].decode()
        print(f"h2 app: until-disconnect {tag} waits", flush=True)  # (the tests' cue: the app is in receive())
        while (await receive())["type"] != "http.disconnect":
            pass
        try:  # ASGI: a send after the disconnect is a no-op or raises an OSError (hybrid: ClientDisconnected)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            outcome = "no-op"
        except OSError as exc:
            outcome = type(exc).__name__
        print(f"h2 app: until-disconnect {tag} saw http.disconnect; send: {outcome}", flush=True)
    elif path == "/resp-headers":  # ?case: response headers the server must normalize (or refuse) for HTTP/2
        case = scope["query_string"]
        headers = {
            b"normalize": [(b"X-Upper", b"  v \t"), (b"Connection", b"close"), (b"transfer-encoding", b"chunked"),
                           (b"keep-alive", b"5"), (b"te", b"Trailers")],
            b"te": [(b"te", b"gzip")],
            b"pseudo": [(b":path", b"/x")],
            b"empty": [(b"", b"v")],
        }[case]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"headers"})
    elif path == "/raise":
        raise RuntimeError("boom")
    elif path == "/raise-after-response":  # a whole response, then an error, in the app's first step
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answered"})
        raise RuntimeError("boom after the response (intentional)")
    elif path == "/answer-then-sleep":  # a whole response in the first step, then the app runs on ?seconds
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answered"})
        await asyncio.sleep(float(scope["query_string"] or 1))
    elif path == "/raise-late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after start")
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-sum")],
                    "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"42")]})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello h2"})
