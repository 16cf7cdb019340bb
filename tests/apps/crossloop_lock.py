"""A module-global asyncio.Lock and Semaphore(2) guarding a critical section, used by routes on two loops under
hybrid: ``/{kind}`` on a serving thread, ``/pool/{kind}`` in the async pool (``--async-path '/pool/*'``).

A holder count over the limit answers 409 (mutual exclusion broken); asyncio's "bound to a different event loop"
for a waiter on the other loop is a 500 with hybrid's explanation in the log.
"""

import asyncio

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

GUARDS = {"lock": (asyncio.Lock(), 1), "semaphore": (asyncio.Semaphore(2), 2)}
holders = {"lock": 0, "semaphore": 0}


async def guarded(request):
    kind = request.path_params["kind"]
    guard, limit = GUARDS[kind]
    async with guard:
        holders[kind] += 1
        try:
            if holders[kind] > limit:
                return PlainTextResponse(f"{holders[kind]} holders of a {kind} for {limit}", status_code=409)
            await asyncio.sleep(0.001)
        finally:
            holders[kind] -= 1
    return PlainTextResponse("ok")


async def health(request):
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/health", health), Route("/{kind}", guarded), Route("/pool/{kind}", guarded)])
