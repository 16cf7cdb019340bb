"""A FastAPI app the way async apps are written: an httpx.AsyncClient and an asyncio.Lock-guarded cache made in
the lifespan and used by every request. Under hybrid each loop that runs app code (serving threads, spares, the
async pool) runs the lifespan and gets its own; UPSTREAM (env) is the base URL the client talks to.
Paths under /pool/ are meant to be served with --async-path '/pool/*'."""

import asyncio
import os
import threading
import time
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request


@asynccontextmanager
async def lifespan(app):
    client = httpx.AsyncClient(base_url=os.environ["UPSTREAM"], timeout=10)
    try:
        yield {"client": client, "lock": asyncio.Lock(), "cache": {}, "loop_id": id(asyncio.get_running_loop()),
               "fetches": [0]}
    finally:
        await client.aclose()


app = FastAPI(lifespan=lifespan)


async def _fetch(request: Request, key: str) -> dict:
    state = request.state
    async with state.lock:  # contended: concurrent requests of this loop wait on it
        if key not in state.cache:
            r = await state.client.get(f"/v/{key}")
            r.raise_for_status()
            state.cache[key] = r.text
            state.fetches[0] += 1
        value = state.cache[key]
    pong = await state.client.get("/ping")  # and the client's pooled connections, every request
    return {"key": key, "value": value, "pong": pong.text, "thread": threading.current_thread().name,
            "loop_matches": state.loop_id == id(asyncio.get_running_loop())}


@app.get("/fetch/{key}")
async def fetch(request: Request, key: str):
    return await _fetch(request, key)


@app.get("/pool/fetch/{key}")
async def pool_fetch(request: Request, key: str):
    return await _fetch(request, key)


@app.get("/block")
async def block(t: float = 0.3):
    time.sleep(t)  # blocks its loop's thread on purpose: the monitor hands the set to a spare
    return {"blocked": t, "thread": threading.current_thread().name}
