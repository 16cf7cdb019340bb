"""Raw ASGI WebSocket app for tests/test_websocket.py (and the Autobahn echo: any other path echoes).

Paths:
  /            echo (text as text, bytes as bytes); also /ws
  /subproto    accepts the first offered subprotocol, with an extra header
  /close       accepts, then closes with the code and reason given in the query (code=4001&reason=bye)
  /deny        closes before accept (HTTP 403)
  /response    denial response extension: 418 with a body
  /scope       accepts and sends the scope (JSON-able parts) as text
  /disconnect  records the disconnect code and reason of the last client; /lastdisconnect sends it
  /error       raises before accept (500); /error-after raises after accept (1011)
  /sendfirst   sends before accept (event-order error: 500)
  /sink        accepts, then receives and drops every message (never sends)
  /produce     accepts, then sends numbered 64 KiB binary messages until the client goes away
HTTP requests: GET /sleep?s=N blocks the thread with time.sleep; anything else answers "plain http" with the
Upgrade header it saw.
"""

import asyncio
import json
import time
from urllib.parse import parse_qs

LAST = {"disconnect": None}


async def _echo(receive, send):
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            LAST["disconnect"] = [message["code"], message.get("reason", "")]
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/subproto":
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                    "headers": [(b"x-extra", b"yes")]})
        await send({"type": "websocket.send", "text": json.dumps(offered)})
        await receive()
    elif path == "/close":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": int(query.get("code", 1000)), "reason": query.get("reason", "")})
        message = await receive()
        assert message["type"] == "websocket.disconnect", message
    elif path == "/deny":
        await send({"type": "websocket.close"})
    elif path == "/response":
        await send({"type": "websocket.http.response.start", "status": 418,
                    "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"1")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"tea"})
    elif path == "/scope":
        await send({"type": "websocket.accept"})
        shown = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
        shown["raw_path"] = scope["raw_path"].decode()
        shown["query_string"] = scope["query_string"].decode()
        shown["state"] = sorted(scope["state"])
        await send({"type": "websocket.send", "text": json.dumps(shown)})
        await receive()
    elif path == "/lastdisconnect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(LAST["disconnect"])})
        await receive()
    elif path == "/error":
        raise RuntimeError("boom before accept")
    elif path == "/error-after":
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom after accept")
    elif path == "/sendfirst":
        await send({"type": "websocket.send", "text": "too early"})
    elif path == "/sink":
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    elif path == "/produce":
        await send({"type": "websocket.accept"})
        n = 0
        while True:
            n += 1
            await send({"type": "websocket.send", "bytes": n.to_bytes(8, "big") * 8192})
    elif path == "/slowaccept":
        await asyncio.sleep(float(query.get("s", "0.5")))
        await send({"type": "websocket.accept"})
        await _echo_rest(receive, send)
    else:
        await _echo(receive, send)


async def _echo_rest(receive, send):
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


async def http(scope, receive, send):
    if scope["path"] == "/sleep":
        seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["1"])[0])
        time.sleep(seconds)
        body = b"slept"
    else:
        upgrade = dict(scope["headers"]).get(b"upgrade", b"")
        body = b"plain http; upgrade=" + upgrade
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["ready"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    else:
        await http(scope, receive, send)
