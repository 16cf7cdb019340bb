"""A ready batch cut by a takeover (tests/test_takeover_batch.py).

/gate holds the serving thread (asleep, under the takeover threshold) until the file BATCH_GATE exists, so the
client can make many connections ready at once; /block sleeps past the threshold (a takeover); /fast answers the
order in which it was served (0, 1, 2, ...) across all connections.
"""

import itertools
import os
import time

_served = itertools.count()
GATE_WAIT = 0.4  # seconds at most (under the test's --blocking-threshold, 0.5: never taken over)
BLOCK = 1.5


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/gate":
        gate = os.environ["BATCH_GATE"]
        open(gate + ".entered", "w").close()
        deadline = time.monotonic() + GATE_WAIT
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.001)
        body = b"gate"
    elif path == "/block":
        time.sleep(BLOCK)
        body = b"block"
    else:
        body = str(next(_served)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
