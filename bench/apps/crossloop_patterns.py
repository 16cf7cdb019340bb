"""Apps that coordinate requests through module-level asyncio objects (issue 21), as users write them for uvicorn.

Under hybrid the publisher and the subscribers run on different loops: ``POST`` routes on a serving thread, SSE
streams and WebSockets in the async pool.

- ``GET /events`` (Starlette ``StreamingResponse``), ``GET /sse`` (sse-starlette) and the WebSocket ``/ws-queue``:
  each has a Queue in the module-global ``SUBSCRIBERS``; ``POST /publish/{msg}`` puts the message into every one.
- ``GET /event-stream``: awaits the module-global ``ROUND`` ``asyncio.Event``; ``POST /event/{msg}`` sets it.
- ``/ws``: FastAPI's documented ``ConnectionManager`` chat; ``POST /send/{msg}`` broadcasts from an HTTP route,
  a message from one WebSocket client is broadcast from the WebSocket handler, and ``POST /tick/{msg}`` queues it
  for a background task the lifespan started, which broadcasts it.
Every stream first sends ``ready`` once it is subscribed, so a client knows publishing can start.

The tests (tests/test_crossloop_*.py) and the bench's crossloop scenario (bench/scenarios/crossloop.py) serve this
one app; sse-starlette is imported by its route alone, as bench/.venv-peers, where the peers run, lacks it.
"""

import asyncio
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse

TICKS: asyncio.Queue = asyncio.Queue()  # what the lifespan's background task pushes to every WebSocket


@asynccontextmanager
async def lifespan(app):
    # The lifespan runs on every loop under hybrid: only the first one starts the pusher.
    task = None
    if not Pusher.started:
        Pusher.started = True
        task = asyncio.create_task(push_ticks())
    yield
    if task is not None:
        task.cancel()


class Pusher:
    started = False


async def push_ticks():
    """A background task started in the lifespan: pushes each tick to every connected WebSocket."""
    while True:
        await manager.broadcast(await TICKS.get())


app = FastAPI(lifespan=lifespan)

SUBSCRIBERS: set[asyncio.Queue] = set()


class Round:
    """The Event of the current round and its message; ``POST /event`` sets it and starts the next round."""

    event = asyncio.Event()
    message = ""


@app.get("/health", response_class=PlainTextResponse)
async def health():
    return "ok"


@app.get("/events")
async def events():
    async def stream():
        q: asyncio.Queue = asyncio.Queue()
        SUBSCRIBERS.add(q)
        try:
            yield "data: ready\n\n"
            while True:
                yield f"data: {await q.get()}\n\n"
        finally:
            SUBSCRIBERS.discard(q)

    return StreamingResponse(stream(), media_type="text/event-stream")


@app.get("/sse")
async def sse():
    from sse_starlette.sse import EventSourceResponse

    async def stream():
        q: asyncio.Queue = asyncio.Queue()
        SUBSCRIBERS.add(q)
        try:
            yield {"data": "ready"}
            while True:
                yield {"data": await q.get()}
        finally:
            SUBSCRIBERS.discard(q)

    return EventSourceResponse(stream())


@app.post("/publish/{msg}", response_class=PlainTextResponse)
async def publish(msg: str):
    for q in list(SUBSCRIBERS):
        q.put_nowait(msg)
    return str(len(SUBSCRIBERS))


@app.get("/event-stream")
async def event_stream():
    async def stream():
        yield "data: ready\n\n"
        while True:
            event = Round.event
            await event.wait()
            yield f"data: {Round.message}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


@app.post("/event/{msg}", response_class=PlainTextResponse)
async def set_event(msg: str):
    event, Round.event = Round.event, asyncio.Event()
    Round.message = msg
    event.set()
    return "set"


class ConnectionManager:  # FastAPI's documentation, "Handling disconnections and multiple clients"
    def __init__(self):
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket):
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket):
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str):
        for connection in list(self.active_connections):
            await connection.send_text(message)


manager = ConnectionManager()


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):
    await manager.connect(websocket)
    await websocket.send_text("ready")
    try:
        while True:
            await manager.broadcast(await websocket.receive_text())
    except WebSocketDisconnect:
        manager.disconnect(websocket)


@app.websocket("/ws-queue")
async def websocket_queue(websocket: WebSocket):
    """The chat of issue 21: a WebSocket awaiting a module-global Queue that ``POST /publish`` feeds."""
    await websocket.accept()
    q: asyncio.Queue = asyncio.Queue()
    SUBSCRIBERS.add(q)
    QUEUE_SOCKETS.append(websocket)
    try:
        await websocket.send_text("ready")
        while True:
            await websocket.send_text(await q.get())
    finally:
        SUBSCRIBERS.discard(q)
        QUEUE_SOCKETS.remove(websocket)


QUEUE_SOCKETS: list[WebSocket] = []


@app.post("/send/{msg}", response_class=PlainTextResponse)
async def send(msg: str):
    await manager.broadcast(msg)
    return str(len(manager.active_connections))


@app.post("/send-big/{size}", response_class=PlainTextResponse)
async def send_big(size: int):
    """One message larger than the kernel's socket buffers: its send waits for the client to read. Answers the
    thread the route continued on after it: its own loop's, whatever loop the WebSockets live on."""
    before = threading.current_thread().name
    await manager.broadcast("x" * size)
    return f"{before} {threading.current_thread().name}"


@app.post("/tick/{msg}", response_class=PlainTextResponse)
async def tick(msg: str):
    TICKS.put_nowait(msg)
    return "queued"


@app.post("/pull", response_class=PlainTextResponse)
async def pull():
    """Receives the next message of the newest ``/ws-queue`` WebSocket from a POST route (another loop)."""
    return await QUEUE_SOCKETS[-1].receive_text()
