"""An app under which the garbage collector runs at (nearly) every allocation of a container: gen0's threshold is 1
(the older generations' are high, so each collection stays small). The server's own locks must never be held
across code that can allocate: a collection runs the monitor's gc.callbacks hook, which takes the monitor's lock.

GET /block?t=S sleeps S seconds in the handler (a blocking step: the monitor flags it, the stack sampler reads it);
anything else answers at once."""

import gc
import time

gc.set_threshold(1, 1_000_000, 1_000_000)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":
        time.sleep(float(scope["query_string"].decode().partition("=")[2] or 0.3))
        body = b"blocked"
    else:
        body = b"fast"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
