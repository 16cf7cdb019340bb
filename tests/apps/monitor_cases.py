"""Handlers that overrun the blocking threshold without being blocked, for tests/test_monitor.py.

/collect?n=N runs N full collections of a large heap inside the handler (holding the GIL the whole time, as an
automatic one does); /collect-then-block?t=T runs one, then blocks T seconds in time.sleep; /gil-wait?n=N starts a
thread (not a serving one) that holds the GIL about N/100 s in one C call (sum over a range), while the handler
makes no blocking call: the serving thread sleeps waiting for the GIL, and for nothing else; every other path
answers at once.
"""

import gc
import threading
import time

# About 400,000 tracked containers that live as long as the process: each full collection walks all of them.
_HEAP = [[] for _ in range(400_000)]


def _query(scope) -> dict:
    pairs = (p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    return dict(pairs)


_HOG = {"n": 0, "started": 0}
_HOG_GO = threading.Event()


def _hog() -> None:
    while True:
        _HOG_GO.wait()
        _HOG_GO.clear()
        _HOG["started"] += 1
        sum(range(_HOG["n"]))  # one C call: the GIL stays with this thread until it returns


threading.Thread(target=_hog, name="gil-hog", daemon=True).start()


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
    elif scope["path"] == "/gil-wait":
        _HOG["n"] = int(q.get("n", "30")) * 1_000_000
        started_before = _HOG["started"]
        begun = time.perf_counter()
        _HOG_GO.set()
        while _HOG["started"] == started_before:
            pass  # no blocking call: the GIL goes to the hog at Python's next forced switch, and comes back after
        body = f"waited {time.perf_counter() - begun:.3f}".encode()
    else:
        body = b"fast"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
