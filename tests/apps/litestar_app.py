"""A Litestar application: routes (path/query params, a controller, DTO-free dataclass bodies, a sync handler),
exceptions, lifespan state, server-sent events and WebSockets (a listener and a low-level handler)."""

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Controller, Litestar, Request, WebSocket, get, post, websocket, websocket_listener
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.response import ServerSentEvent, ServerSentEventMessage


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    app.state.greeting = "hello from litestar"
    yield


@dataclass
class Order:
    item: str
    quantity: int


@get("/")
async def index() -> str:
    return "litestar index"


@get("/books/{book_id:int}")
async def book(book_id: int, fmt: str = "short") -> dict:
    if book_id == 0:
        raise NotFoundException("no book 0")
    return {"book_id": book_id, "fmt": fmt}


@get("/block")
async def block(t: float = 0.3) -> dict:
    time.sleep(t)  # blocks the loop on purpose: a takeover, and a new spare (with its own lifespan) starts
    return {"blocked": t}


@get("/sync", sync_to_thread=True)
def sync_handler() -> dict:
    return {"thread": threading.current_thread().name}


@post("/orders")
async def create_order(data: Order) -> dict:
    return {"item": data.item, "quantity": data.quantity, "total": data.quantity * 3}


@get("/state")
async def state_view(state: State, request: Request) -> dict:
    return {"greeting": state.greeting, "thread": threading.current_thread().name}


class Inventory(Controller):
    path = "/inventory"

    @get("/{sku:str}")
    async def item(self, sku: str) -> dict:
        return {"sku": sku}

    @post("/")
    async def add(self, data: dict) -> dict:
        return {"added": data}


@get("/sse")
async def sse(n: int = 4) -> ServerSentEvent:
    async def gen():
        for i in range(n):
            yield ServerSentEventMessage(data=f"tick {i} {threading.current_thread().name}", event="tick", id=str(i))
            await asyncio.sleep(0.02)

    return ServerSentEvent(gen())


@websocket_listener("/ws/echo")
async def echo(data: str) -> str:
    return f"echo: {data}"


@websocket("/ws/raw")
async def raw(socket: WebSocket) -> None:
    await socket.accept()
    await socket.send_json({"greeting": socket.app.state.greeting, "thread": threading.current_thread().name})
    data = await socket.receive_bytes()
    await socket.send_bytes(data[::-1])
    await socket.close(code=4003)


app = Litestar(
    route_handlers=[index, block, book, sync_handler, create_order, state_view, Inventory, sse, echo, raw],
    lifespan=[lifespan],
)
