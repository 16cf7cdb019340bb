"""A WebSocket's ``send``/``receive`` called by app code running on another loop than the connection's.

The broadcast pattern (FastAPI's ``ConnectionManager``): a route keeps every open WebSocket in a module-level
list and sends to each. Under hybrid the WebSockets live on the async pool's loop while a plain ``POST`` route runs
on a serving thread's: the session's futures, timers and stream belong to the pool's loop and are not thread-safe.
So such a call runs on the owner's loop (``run_coroutine_threadsafe``) and the caller awaits it on its own loop.
The session checks the thread first; on the owner's thread that check is all this costs.
"""

from __future__ import annotations

import asyncio

from hybrid.asgi.http import ClientDisconnected


async def on_owner_loop(loop: asyncio.AbstractEventLoop, coro):
    """Run ``coro`` on ``loop`` and return (or raise) what it does, awaited on the calling loop."""
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # the owner's loop is closed: its connections are gone
        coro.close()
        raise ClientDisconnected("the WebSocket's event loop has stopped") from None
    return await asyncio.wrap_future(future)
