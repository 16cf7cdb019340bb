"""An app written for a single event loop: module-level asyncio objects, created on first use and bound to
whichever loop used them first. It works under uvicorn and under ``hybrid --mode async``; in hybrid mode a second
loop touching them raises "bound to a different event loop".

``/count`` takes the lock, awaits, and bumps a counter (``?t=`` seconds held); ``/thread`` names the thread.
"""

import asyncio
import threading
from urllib.parse import parse_qs

LOCK = asyncio.Lock()
QUEUE: asyncio.Queue = asyncio.Queue()
COUNT = {"n": 0, "loops": set()}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    q = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/count":
        async with LOCK:  # contended: binds the lock to the running loop
            await QUEUE.put(1)
            await asyncio.sleep(float(q.get("t", ["0.01"])[0]))
            await QUEUE.get()
            COUNT["n"] += 1
            COUNT["loops"].add(id(asyncio.get_running_loop()))
        body = f"{COUNT['n']} loops={len(COUNT['loops'])}".encode()
    else:
        body = threading.current_thread().name.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
