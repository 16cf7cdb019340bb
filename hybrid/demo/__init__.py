"""The built-in demo app: ``hybrid`` with no APP argument serves it.

GET /      an HTML page
GET /json  a small JSON document
"""

import json

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>hybrid</title></head>
<body><h1>hybrid is running</h1>
<p>This is the built-in demo app. Serve your own with <code>hybrid MODULE:APP</code>.</p>
<p>Try <a href="/json">/json</a>.</p></body></html>
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/":
        status, ctype, body = 200, b"text/html; charset=utf-8", PAGE
    elif scope["path"] == "/json":
        payload = {"server": "hybrid", "method": scope["method"], "http_version": scope["http_version"]}
        status, ctype, body = 200, b"application/json", json.dumps(payload).encode()
    else:
        status, ctype, body = 404, b"text/plain; charset=utf-8", b"Not Found\n"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
    await send({"type": "http.response.body", "body": body})
