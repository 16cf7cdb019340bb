"""The built-in demo app: ``hybrid`` with no APP argument serves it.

GET /        one HTML page: a plain request to /json, a live clock fed by server-sent events, a WebSocket echo
GET /json    a small JSON document
GET /clock   the SSE clock: one event a second (served by the async pool: it accepts text/event-stream)
GET /stream  a plain-text response streamed line by line (more_body=True), 10 lines 100 ms apart
WS  /ws      a WebSocket echo (text as text, bytes as bytes), served by the async pool; the page has a small form
"""

import asyncio
import json
import time

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>hybrid</title></head>
<body><h1>hybrid is running</h1>
<p>This is the built-in demo app. Serve your own with <code>hybrid MODULE:APP</code>.</p>
<p>A plain request (<a href="/json">/json</a>, served inline by a worker thread):
<code id="plain">loading...</code> <button id="again" type="button">Again</button></p>
<p>Server time, pushed every second over server-sent events: <strong id="clock">waiting...</strong></p>
<p>Try also <a href="/stream">/stream</a> (streamed plain text).</p>
<form id="echo"><label>WebSocket echo (/ws): <input id="message" value="hello" autocomplete="off"></label>
<button>Send</button> <span id="reply"></span></form>
<script>
const plain = document.getElementById("plain");
const fetchPlain = () => fetch("/json").then((r) => r.text()).then((t) => { plain.textContent = t; })
  .catch((err) => { plain.textContent = "failed: " + err; });
document.getElementById("again").onclick = fetchPlain;
fetchPlain();
const clock = document.getElementById("clock");
const events = new EventSource("/clock");
events.onmessage = (e) => { clock.textContent = e.data; };
events.onerror = () => { clock.textContent = "disconnected, retrying..."; };
const reply = document.getElementById("reply");
const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
socket.onmessage = (e) => { reply.textContent = "echo: " + e.data; };
socket.onclose = (e) => { reply.textContent = "closed (" + e.code + ")"; };
document.getElementById("echo").onsubmit = (e) => {
  e.preventDefault();
  socket.send(document.getElementById("message").value);
};
</script>
</body></html>
"""


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _clock(receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    while True:
        now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        await send({"type": "http.response.body", "body": f"data: {now}\n\n".encode(), "more_body": True})
        await asyncio.sleep(1.0)  # send raises OSError once the browser has gone: that ends the stream


async def _stream(send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    for i in range(1, 11):
        await send({"type": "http.response.body", "body": f"line {i} of 10\n".encode(), "more_body": True})
        await asyncio.sleep(0.1)
    await send({"type": "http.response.body", "body": b""})


async def _echo(receive, send):
    message = await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] == "websocket":
        if scope["path"] == "/ws":
            return await _echo(receive, send)
        await receive()
        return await send({"type": "websocket.close", "code": 1000})  # before accept: HTTP 403
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/clock":
        return await _clock(receive, send)
    if path == "/stream":
        return await _stream(send)
    if path == "/":
        status, ctype, body = 200, b"text/html; charset=utf-8", PAGE
    elif path == "/json":
        payload = {"server": "hybrid", "method": scope["method"], "http_version": scope["http_version"]}
        status, ctype, body = 200, b"application/json", json.dumps(payload).encode()
    else:
        status, ctype, body = 404, b"text/plain; charset=utf-8", b"Not Found\n"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
    await send({"type": "http.response.body", "body": body})
