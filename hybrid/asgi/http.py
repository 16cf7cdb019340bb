"""ASGI HTTP for one request: the scope, ``receive`` and ``send`` (ASGI HTTP spec 2.4).

The RequestCycle runs for every request, so it is compiled: hybrid/_speedups/cycle.pyx holds it, with the why of
each step. This module names it for the Python layer (the connection, the async pool, the WebSocket side).
"""

from hybrid._speedups.cycle import (
    ASGI_VERSION,
    BODY_HIGH_WATER,
    DISCONNECT,
    HOLD_FIRST_CHUNK,
    ClientDisconnected,
    RequestCycle,
    build_scope,
)

__all__ = ["ASGI_VERSION", "BODY_HIGH_WATER", "DISCONNECT", "HOLD_FIRST_CHUNK", "ClientDisconnected", "RequestCycle",
           "build_scope"]
