"""ASGI lifespan for one event loop.

Async resources (database pools, HTTP clients) belong to the loop that made them, so every loop that runs app
code runs its own lifespan: each SyncWorker thread's loop (and, later, the AsyncPool's). ``state`` is that
loop's lifespan state; each request's ``scope["state"]`` is a shallow copy of it.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger("hybrid.error")

LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}
_unsupported_logged = False


class LifespanFailure(Exception):
    """Startup failed: the server must not serve. The message is the app's."""


class Lifespan:
    def __init__(self, app, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict = {}
        self.task: asyncio.Task | None = None
        self.supported = mode != "off"
        self._inbox: asyncio.Queue | None = None
        self._answer: asyncio.Future | None = None
        self._sent_any = False

    async def startup(self) -> None:
        if not self.supported:
            return
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._answer = loop.create_future()
        scope = {"type": "lifespan", "asgi": LIFESPAN_ASGI, "state": self.state}
        self.task = loop.create_task(self._main(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        kind, message = await self._answer
        if kind == "lifespan.startup.complete":
            return
        if kind == "unsupported":
            # 'auto': an app that raises on a lifespan scope simply has no lifespan.
            self.supported = False
            global _unsupported_logged
            if not _unsupported_logged:  # every loop finds the same: say it once
                _unsupported_logged = True
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            return
        raise LifespanFailure(message or "Application startup failed.")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        self._answer = asyncio.get_running_loop().create_future()
        await self._inbox.put({"type": "lifespan.shutdown"})
        kind, message = await self._answer
        if kind == "lifespan.shutdown.failed":
            logger.error("Application shutdown failed: %s", message)
        elif kind == "error":
            logger.error("Application shutdown failed: %s", message)

    async def _main(self, scope: dict) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:  # the app's own error: report it, never crash the loop
            if self.mode == "auto" and not self._sent_any:
                self._settle("unsupported", None)
            else:
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
                self._settle("error", f"{type(exc).__name__}: {exc}")
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            # Returning without answering means the app has no lifespan to run (as uvicorn treats it).
            self._settle("unsupported", None)

    def _settle(self, kind: str, message: str | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((kind, message))

    async def _receive(self) -> dict:
        return await self._inbox.get()

    async def _send(self, message: dict) -> None:
        kind = message.get("type")
        if kind not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"ASGI: unexpected lifespan message type {kind!r}")
        self._sent_any = True
        self._settle(kind, message.get("message", ""))
