"""A Starlette application: routing (converters, mounts, methods, url_for, redirects), StaticFiles, a
WebSocketEndpoint, lifespan state. STATIC_DIR (env) is the directory StaticFiles serves."""

import asyncio
import os
import threading
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint, WebSocketEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles


@asynccontextmanager
async def lifespan(app):
    queue: asyncio.Queue = asyncio.Queue()  # loop-bound: made here, one per loop
    yield {"queue": queue, "loop_id": id(asyncio.get_running_loop()), "name": "starlette-test"}


async def homepage(request: Request):
    return PlainTextResponse("home")


async def user(request: Request):
    return JSONResponse({"user_id": request.path_params["user_id"], "url": str(request.url_for("user", user_id=7))})


async def files(request: Request):
    return JSONResponse({"rest": request.path_params["rest"]})


async def go(request: Request):
    return RedirectResponse(request.url_for("homepage"), status_code=307)


class Items(HTTPEndpoint):
    async def get(self, request):
        return JSONResponse({"method": "GET"})

    async def post(self, request):
        return JSONResponse({"method": "POST", "json": await request.json()})


async def state(request: Request):
    queue = request.state.queue
    await queue.put(request.query_params.get("v", "x"))
    got = await asyncio.wait_for(queue.get(), 1)
    return JSONResponse({"name": request.state.name, "got": got, "thread": threading.current_thread().name,
                         "loop_matches": request.state.loop_id == id(asyncio.get_running_loop())})


async def form(request: Request):
    async with request.form() as data:
        return JSONResponse({k: v for k, v in data.items()})


class Echo(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, websocket):
        await websocket.accept()
        await websocket.send_json({"state": websocket.state.name, "thread": threading.current_thread().name})

    async def on_receive(self, websocket, data):
        if data.get("close"):
            await websocket.close(code=4000)
            return
        await websocket.send_json({"echo": data, "path": websocket.url.path})


routes = [
    Route("/", homepage, name="homepage"),
    Route("/users/{user_id:int}", user, name="user"),
    Route("/files/{rest:path}", files),
    Route("/go", go),
    Route("/items", Items),
    Route("/state", state),
    Route("/form", form, methods=["POST"]),
    WebSocketRoute("/ws", Echo),
    Mount("/api", routes=[Route("/ping", lambda request: PlainTextResponse("pong"), name="ping")]),
]
static_dir = os.environ.get("STATIC_DIR")
if static_dir:
    routes.append(Mount("/static", StaticFiles(directory=static_dir), name="static"))

app = Starlette(routes=routes, lifespan=lifespan)
