"""A raw ASGI app whose HTTP routes (on a serving thread's loop) send to WebSockets the async pool owns, for
tests/test_crossloop_xsend.py (hybrid/asgi/crossloop.py: data messages handed over without a round trip).

WebSocket ``/ws``: accepts, registers itself (the newest is the one the routes use), sends ``ready``; then for
each text message from its client:
  ``hold:N``  sends ``holding:N``, then blocks the pool's loop (at most 5 s) until a route opens the gate, and
              sends ``own:N`` in that same step: what the route sent before opening it waits in the outbox
  ``end``     the same, then returns (the server closes with 1000) instead of sending
HTTP (each answers the thread it ran on first):
  ``POST /send?m=a,b``       sends each message to the newest WebSocket, then opens its gate
  ``POST /flood?n=N&size=S`` sends N binary messages of S bytes (a 4-byte sequence number first); ``GET /progress``
                             says how many sends returned
  ``POST /after-close``      once the newest WebSocket saw its disconnect: a send, then a close, what each raised
  ``POST /bad``              sends a message with bytes as ``text``, then one with neither: what each raised
  ``GET /closed``            "yes" once the newest WebSocket's handler got its disconnect
"""

import struct
import threading
from urllib.parse import parse_qs

SOCKETS: list = []
PROGRESS = {"sent": 0}


class Conn:
    def __init__(self, send) -> None:
        self.send = send
        self.gate = threading.Event()
        self.closed = threading.Event()


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    conn = Conn(send)
    SOCKETS.append(conn)
    await send({"type": "websocket.send", "text": "ready"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            conn.closed.set()
            return
        kind, _, n = message["text"].partition(":")
        await send({"type": "websocket.send", "text": f"holding:{n}"})
        opened = conn.gate.wait(5)  # (blocks the pool's loop on purpose: the outbox's wake-up waits behind it)
        conn.gate.clear()
        if not opened:
            await send({"type": "websocket.send", "text": f"gate timed out:{n}"})
        elif kind == "end":
            return
        else:
            await send({"type": "websocket.send", "text": f"own:{n}"})


async def _error_of(send, message) -> str:
    try:
        await send(message)
    except Exception as exc:  # noqa: BLE001 - what the app would see is the answer
        return f"{type(exc).__name__}{' OSError' if isinstance(exc, OSError) else ''}"
    return "ok"


async def http(scope, receive, send):
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    lines = [threading.current_thread().name]
    conn = SOCKETS[-1] if SOCKETS else None
    if path == "/send":
        for text in query["m"].split(","):
            await conn.send({"type": "websocket.send", "text": text})
        conn.gate.set()
    elif path == "/flood":
        PROGRESS["sent"] = 0
        size = int(query["size"])
        for i in range(int(query["n"])):
            await conn.send({"type": "websocket.send", "bytes": struct.pack("!I", i) + bytes(size - 4)})
            PROGRESS["sent"] = i + 1
    elif path == "/progress":
        lines.append(str(PROGRESS["sent"]))
    elif path == "/after-close":
        lines.append(await _error_of(conn.send, {"type": "websocket.send", "text": "late"}))
        lines.append(await _error_of(conn.send, {"type": "websocket.close", "code": 1000}))
    elif path == "/bad":
        lines.append(await _error_of(conn.send, {"type": "websocket.send", "text": b"not str"}))
        lines.append(await _error_of(conn.send, {"type": "websocket.send"}))
    elif path == "/closed":
        lines.append("yes" if conn.closed.is_set() else "no")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": "\n".join(lines).encode()})


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
