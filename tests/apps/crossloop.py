"""The classic mistake under a multi-loop server: asyncio objects in module globals.

``EVENT`` binds to the first loop that waits on it; a request served on another loop (the async pool, for paths
under ``/pool/`` when the server runs with ``--async-path '/pool/*'``, or any WebSocket) gets asyncio's
RuntimeError "... is bound to a different event loop".
"""

import asyncio
import threading

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

EVENT = asyncio.Event()  # module global, shared by every loop: the mistake this app makes on purpose


async def wait(request):
    try:
        await asyncio.wait_for(EVENT.wait(), 0.01)  # EVENT not set: wait() makes a future on EVENT's loop
    except TimeoutError:
        pass
    return PlainTextResponse(threading.current_thread().name)


async def ws_wait(websocket):
    await websocket.accept()
    try:
        await asyncio.wait_for(EVENT.wait(), 0.01)
    except TimeoutError:
        pass
    await websocket.send_text(threading.current_thread().name)
    await websocket.close()


app = Starlette(routes=[Route("/wait", wait), Route("/pool/wait", wait), WebSocketRoute("/ws", ws_wait)])
