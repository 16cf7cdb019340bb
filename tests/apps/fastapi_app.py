"""A FastAPI application with async and plain `def` endpoints."""

import asyncio
import threading
import time
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

BG_DONE: list = []


@asynccontextmanager
async def lifespan(app):
    yield {"db": "connected"}


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def common(q: str | None = None, limit: int = 10):
    return {"q": q, "limit": limit}


@app.get("/fast")
async def fast():
    return {"fast": True}


@app.get("/sync-fast")
def sync_fast():
    return {"sync": True, "thread": threading.current_thread().name}


@app.get("/def-block")
def def_block(t: float = 1.0):
    time.sleep(t)
    return {"blocked": t}


@app.get("/async-block")
async def async_block(t: float = 1.0):
    time.sleep(t)  # blocks the event loop thread on purpose
    return {"blocked": t}


@app.get("/async-sleep")
async def async_sleep(t: float = 0.2):
    await asyncio.sleep(t)
    return {"slept": t}


@app.get("/items/{item_id}")
async def read_item(item_id: int, params: dict = Depends(common)):
    return {"item_id": item_id, **params}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price": item.price, "tags": item.tags, "total": item.price * 2}


@app.put("/items/{item_id}")
def update_item(item_id: int, item: Item):
    return {"item_id": item_id, "name": item.name}


@app.get("/missing")
async def missing():
    raise HTTPException(status_code=404, detail="nope")


@app.get("/header")
async def header(x_token: str = Header()):
    return {"x_token": x_token}


@app.get("/state")
async def state(request: Request):
    return {"db": request.state.db}


@app.get("/text", response_class=PlainTextResponse)
async def text():
    return "plain text"


@app.get("/stream")
async def stream():
    async def gen():
        for i in range(5):
            yield f"chunk{i}\n"
            await asyncio.sleep(0.01)

    return StreamingResponse(gen(), media_type="text/plain")


@app.post("/bg")
async def bg(background_tasks: BackgroundTasks):
    background_tasks.add_task(BG_DONE.append, "done")
    return {"scheduled": True}


@app.get("/bg-count")
async def bg_count():
    return {"count": len(BG_DONE)}


@app.get("/timeout")
async def timeout():
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(2)
    except TimeoutError:
        return {"timeout": True}
    return {"timeout": False}


@app.get("/boom")
async def boom():
    raise RuntimeError("fastapi boom (intentional)")


@app.websocket("/ws/{room}")
async def ws_room(websocket: WebSocket, room: str, token: str | None = None):
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json({"room": room, "token": token, "echo": text})
    except WebSocketDisconnect:
        pass
