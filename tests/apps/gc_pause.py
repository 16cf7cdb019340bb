"""A heap large enough that a full garbage collection takes a while, and handlers that run one.

/collect?n=N runs N full collections inside the handler (holding the GIL the whole time, as an automatic one does);
/collect-then-block?t=T runs one, then blocks T seconds in time.sleep; every other path answers at once.
"""

import gc
import time

# About 400,000 tracked containers that live as long as the process: each full collection walks all of them.
_HEAP = [[] for _ in range(400_000)]


def _query(scope) -> dict:
    pairs = (p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    return dict(pairs)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    q = _query(scope)
    if scope["path"] == "/collect":
        started = time.perf_counter()
        for _ in range(int(q.get("n", "1"))):
            gc.collect()
        body = f"collected in {time.perf_counter() - started:.3f}".encode()
    elif scope["path"] == "/collect-then-block":
        gc.collect()
        time.sleep(float(q.get("t", "1")))
        body = b"blocked"
    else:
        body = b"fast"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
