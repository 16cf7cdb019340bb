"""A FastAPI application using the features real apps lean on: middleware (BaseHTTPMiddleware, pure ASGI, GZip),
exception handlers, yield dependencies, lifespan state, multipart uploads, BackgroundTasks, streaming, SSE and
WebSockets. Complements fastapi_app.py (tests/test_fastapi.py); driven by tests/test_fw_fastapi.py.

LIFESPAN_LOG (env): a file that gets one line per lifespan startup and shutdown, naming the thread.
"""

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, Depends, FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

BACKGROUND: dict[str, dict] = {}  # key -> when the background task ran (plain data: fine as a global)
CLEANUPS: list[str] = []  # yield dependencies that ran their cleanup


def _log_lifespan(what: str) -> None:
    path = os.environ.get("LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {threading.current_thread().name}\n")


@asynccontextmanager
async def lifespan(app) -> AsyncIterator[dict]:
    _log_lifespan("startup")
    # per-loop resources: each loop that runs app code runs this and gets its own
    yield {"loop_id": id(asyncio.get_running_loop()), "hits": [0], "lock": asyncio.Lock(), "greeting": "hello"}
    _log_lifespan("shutdown")


app = FastAPI(lifespan=lifespan)


class TeapotError(Exception):
    def __init__(self, name: str):
        self.name = name


@app.exception_handler(TeapotError)
async def teapot_handler(request: Request, exc: TeapotError):
    return JSONResponse({"teapot": exc.name}, status_code=418, headers={"x-handled": "teapot"})


@app.exception_handler(Exception)
async def catch_all(request: Request, exc: Exception):  # Starlette sends this, then re-raises to the server
    return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=500)


@app.middleware("http")  # BaseHTTPMiddleware
async def timing(request: Request, call_next):
    started = time.perf_counter()
    request.state.mw_seen = True
    response = await call_next(request)
    response.headers["x-elapsed"] = f"{time.perf_counter() - started:.6f}"
    response.headers["x-mw-order"] = response.headers.get("x-mw-order", "") + "base;"
    return response


class PureASGIHeader:
    """A pure ASGI middleware (no BaseHTTPMiddleware): adds a header to every HTTP response, counts WebSockets."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message["headers"], (b"x-pure-asgi", b"1")]
            await send(message)

        await self.app(scope, receive, send_wrapper)


app.add_middleware(PureASGIHeader)
app.add_middleware(GZipMiddleware, minimum_size=1000)


# -- dependencies ------------------------------------------------------------------------------------------


async def db_session(request: Request):
    session = {"id": os.urandom(4).hex(), "greeting": request.state.greeting}
    try:
        yield session
    finally:
        CLEANUPS.append(session["id"])


class Paging:
    def __init__(self, offset: int = 0, limit: int = 3):
        self.offset, self.limit = offset, limit


def current_user(x_user: str | None = None, session: dict = Depends(db_session)):  # a def sub-dependency
    return {"user": x_user or "anonymous", "session": session["id"]}


@app.get("/deps")
async def deps(page: Paging = Depends(), user: dict = Depends(current_user), session: dict = Depends(db_session)):
    # db_session is cached per request: current_user got the same session
    return {"offset": page.offset, "limit": page.limit, **user, "same_session": user["session"] == session["id"],
            "greeting": session["greeting"]}


@app.get("/cleanups/{session_id}")
async def cleanup_done(session_id: str):
    return {"cleaned": session_id in CLEANUPS}


CALLS: dict[str, int] = {}


@app.get("/once/{key}")
async def once(key: str):
    """A GET with a side effect: it must run once per request, even behind BaseHTTPMiddleware."""
    CALLS[key] = CALLS.get(key, 0) + 1
    return {"calls": CALLS[key], "thread": threading.current_thread().name}


@app.get("/block")
async def block(t: float = 0.3):
    time.sleep(t)  # blocks the loop on purpose: a takeover, and a new spare (with its own lifespan) starts
    return {"blocked": t}


# -- lifespan state, plain def ----------------------------------------------------------------------------------


@app.get("/state")
async def state(request: Request):
    async with request.state.lock:  # a lifespan-made Lock: this loop's own
        request.state.hits[0] += 1
        return {"loop_matches": request.state.loop_id == id(asyncio.get_running_loop()),
                "thread": threading.current_thread().name, "mw_seen": request.state.mw_seen}


@app.get("/def-state")
def def_state(request: Request):
    return {"greeting": request.state.greeting, "thread": threading.current_thread().name}


# -- errors -----------------------------------------------------------------------------------------------------


@app.get("/teapot/{name}")
async def teapot(name: str):
    raise TeapotError(name)


@app.get("/crash")
def crash():
    raise ValueError("intentional crash in a def endpoint")


# -- uploads ----------------------------------------------------------------------------------------------------


@app.post("/upload")
async def upload(file: UploadFile = File(...), label: str = Form(...)):
    digest = hashlib.sha256()
    size = 0
    while chunk := await file.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return {"label": label, "filename": file.filename, "content_type": file.content_type, "size": size,
            "sha256": digest.hexdigest()}


@app.post("/upload-def")
def upload_def(files: list[UploadFile] = File(...)):
    return [{"filename": f.filename, "size": len(data := f.file.read()), "sha256": hashlib.sha256(data).hexdigest()}
            for f in files]


# -- background tasks -------------------------------------------------------------------------------------------


async def async_job(key: str, delay: float) -> None:
    await asyncio.sleep(delay)
    BACKGROUND[key] = {"done": time.time(), "thread": threading.current_thread().name}
    _log_lifespan(f"background-{key}")


def def_job(key: str) -> None:
    BACKGROUND[key + "-def"] = {"done": time.time(), "thread": threading.current_thread().name}


@app.post("/bg/{key}")
async def bg(key: str, tasks: BackgroundTasks, delay: float = 0.4):
    tasks.add_task(async_job, key, delay)
    tasks.add_task(def_job, key)
    return {"scheduled": key, "at": time.time()}


@app.get("/bg/{key}")
async def bg_status(key: str):
    return {"async": BACKGROUND.get(key), "def": BACKGROUND.get(key + "-def")}


# -- streaming --------------------------------------------------------------------------------------------------


def _block(i: int) -> bytes:
    return hashlib.sha256(b"%d" % i).digest() * 2048  # 64 KiB, different per block


@app.get("/big-stream")
def big_stream(blocks: int = 80):  # a sync iterator: Starlette iterates it in the threadpool
    def gen():
        for i in range(blocks):
            yield _block(i)

    return StreamingResponse(gen(), media_type="application/octet-stream")


@app.get("/slow-stream")
async def slow_stream(n: int = 5, delay: float = 0.05):
    async def gen():
        for i in range(n):
            yield f"{i}:{time.time():.6f}\n"
            await asyncio.sleep(delay)

    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/compressible")
async def compressible():
    return {"data": "abc" * 5000}


@app.get("/sse", response_class=EventSourceResponse)
async def sse(request: Request, n: int = 4):
    for i in range(n):
        yield ServerSentEvent(data={"i": i, "thread": threading.current_thread().name}, event="tick", id=str(i))
        await asyncio.sleep(0.02)


# -- WebSocket --------------------------------------------------------------------------------------------------


@app.websocket("/ws")
async def ws(websocket: WebSocket, name: str = "anon"):
    await websocket.accept(subprotocol=None)
    state = websocket.state
    await websocket.send_json({"hello": name, "greeting": state.greeting, "thread": threading.current_thread().name,
                               "loop_matches": state.loop_id == id(asyncio.get_running_loop())})
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("bytes") is not None:
                await websocket.send_bytes(hashlib.sha256(msg["bytes"]).digest())
            elif msg["text"] == "close":
                await websocket.close(code=4001, reason="asked to")
                break
            else:
                await websocket.send_text(msg["text"].upper())
    except WebSocketDisconnect:
        pass
