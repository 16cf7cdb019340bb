"""FastAPI's documented WebSocket ConnectionManager chat across hybrid's loops (issue 21): a POST route on a
serving thread broadcasts to WebSockets the async pool owns (their send is run on the pool's loop,
hybrid/asgi/crossloop.py), and a WebSocket handler broadcasts to the others; latency against uvicorn."""

import base64
import os
import socket
import threading
import time
from functools import partial

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from .crossloop import (
    HYBRID,
    Uvicorn,
    compare,
    http_publisher,
    measure,
    running,
    ws_publisher,
    ws_subscriber,
    ws_url,
)
from .support import Server

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(("stream", "publisher"), [
    ("/ws-queue", partial(http_publisher, path="/publish/")),  # a WebSocket awaiting a Queue a POST route feeds
    ("/ws", partial(http_publisher, path="/send/")),   # await ws.send_text() from a plain POST route, on another loop
    ("/ws", partial(ws_publisher, path="/ws")),        # ... from the WebSocket handler of one more client
    ("/ws", partial(http_publisher, path="/tick/")),   # ... from a background task the lifespan started
], ids=["queue", "from-post", "from-websocket", "from-lifespan-task"])
def test_websocket_patterns(stream, publisher):
    with running(Uvicorn(), Server(*HYBRID), Server(*HYBRID, "--mode", "async")) as (uv, ours, one_loop):
        theirs, default, single = measure([uv, ours, one_loop], ws_subscriber, stream, publisher)
    compare(f"WebSocket {stream}", default, theirs)
    compare(f"WebSocket {stream}, --mode async", single, theirs)


def test_broadcast_waits_for_a_slow_reader_on_its_own_loop():
    """A message bigger than the socket buffers, sent from a POST route to a WebSocket that is not being read: the
    send waits for the reader on the pool's loop while the route waits on its own, and carries on there."""
    size = 16_000_000
    with Server(*HYBRID) as srv, socket.create_connection(srv.addr, timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"ready" not in head:  # the 101, then the app's "ready" message
            head += sock.recv(4096) or b"<EOF>"
            assert b"<EOF>" not in head, head
        answer = {}
        post = threading.Thread(target=lambda: answer.update(r=httpx.post(f"{srv.url}/send-big/{size}", timeout=20)))
        post.start()
        time.sleep(0.5)  # the route is in send, the server's buffer over its high-water mark
        received = 0
        while received < size + 10:  # the frame: a 10-byte header (64-bit length) and the payload
            data = sock.recv(1 << 20)
            assert data, f"closed after {received} bytes; POST: {answer}"
            received += len(data)
        post.join(20)
    r = answer["r"]
    assert r.status_code == 200, (r.status_code, r.text, srv.output)
    before, after = r.text.split()
    assert before == after and before.startswith("hybrid-worker-"), r.text  # the route stayed on its own thread
    assert received == size + 10


def test_receive_from_another_loop():
    """A POST route on a serving thread waits for a WebSocket's next message (the pool's): run on the pool's loop."""
    with Server(*HYBRID) as srv:
        with ws_connect(ws_url(srv, "/ws-queue"), open_timeout=5, close_timeout=2) as ws:
            assert ws.recv(timeout=5) == "ready"
            for word in ("hello", "again"):
                answer: dict = {}
                post = threading.Thread(target=lambda a=answer: a.update(r=httpx.post(srv.url + "/pull", timeout=5)))
                post.start()
                time.sleep(0.3)  # the route waits in receive() before the message comes
                ws.send(word)
                post.join(6)
                r = answer["r"]
                assert (r.status_code, r.text) == (200, word), (r.status_code, r.text, srv.output[-2000:])
