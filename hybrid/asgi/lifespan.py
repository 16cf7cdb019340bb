"""ASGI lifespan for one event loop.

Async resources (database pools, HTTP clients) belong to the loop that made them, so every loop that runs app
code runs its own lifespan: each SyncWorker thread's loop (and, later, the AsyncPool's). ``state`` is that
loop's lifespan state; each request's ``scope["state"]`` is a shallow copy of it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback

logger = logging.getLogger("hybrid.error")

LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}
_unsupported_logged = False


class LifespanFailure(Exception):
    """Startup failed: the server must not serve. The message is the app's (or the traceback of what it raised);
    ``where`` names the loop."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


# At shutdown a loop waits at most this long for the lifespans started after its own to shut down first.
LIFO_WAIT = 5.0


class LifespanOrder:
    """One server's lifespans, in the order they started: they shut down in reverse (last started, first
    stopped), one at a time, as nested ``async with`` blocks would. The same app object runs one lifespan per
    loop, and frameworks keep app-level state in it: Litestar enters its app's one event emitter in every
    lifespan, and its exit undoes the last entry, so the loops must leave in the reverse order they came in (out
    of order, a loop exits another loop's task group and hangs forever)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: list[Lifespan] = []

    def started(self, lifespan: Lifespan) -> None:
        with self._lock:
            self._running.append(lifespan)

    def ended(self, lifespan: Lifespan) -> None:
        with self._lock:
            if lifespan in self._running:
                self._running.remove(lifespan)

    def is_last(self, lifespan: Lifespan) -> bool:
        with self._lock:
            return not self._running or self._running[-1] is lifespan or lifespan not in self._running

    async def turn(self, lifespan: Lifespan, until: float | None = None) -> None:
        """Wait (at most LIFO_WAIT, and half of what is left before ``until``) until every lifespan started after
        this one has shut down."""
        deadline = time.monotonic() + LIFO_WAIT
        if until is not None:
            deadline = min(deadline, time.monotonic() + (until - time.monotonic()) / 2)
        while not self.is_last(lifespan):
            if time.monotonic() > deadline:
                logger.warning("Lifespan shutdown: a loop started later has not shut down within %.0f s; "
                               "shutting this one down anyway.", LIFO_WAIT)
                return
            await asyncio.sleep(0.005)


class Lifespan:
    def __init__(self, app, mode: str, order: LifespanOrder | None = None, where: str = "") -> None:
        self.app = app
        self.where = where  # the loop, as messages name it ("the loop of thread hybrid-worker-0")
        self.mode = mode
        self.order = order
        self.state: dict = {}
        self.task: asyncio.Task | None = None
        self.supported = mode != "off"
        self._inbox: asyncio.Queue | None = None
        self._answer: asyncio.Future | None = None
        self._sent_any = False
        self._failed_sent = False  # the app reported a failure itself (lifespan.*.failed)
        self.timed_out = False  # shutdown abandoned at its deadline

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
            logger.debug("Lifespan startup complete (%s).", self.where)
            if self.order is not None:
                self.order.started(self)
            return
        if kind == "unsupported":
            # 'auto': an app that raises on a lifespan scope simply has no lifespan.
            self.supported = False
            global _unsupported_logged
            if not _unsupported_logged:  # every loop finds the same: say it once
                _unsupported_logged = True
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            return
        raise LifespanFailure((message or "").rstrip() or "the app gave no message", self.where)

    async def shutdown(self, in_order: bool = True, deadline: float | None = None) -> None:
        """Run the app's lifespan shutdown; with ``in_order`` (server shutdown) only after the lifespans that
        started later (LifespanOrder). A spare retiring alone does not wait for them. ``deadline`` (monotonic)
        bounds it all: an app still shutting down then is abandoned (``timed_out``)."""
        if deadline is None:
            await self._shutdown(in_order, None)
            return
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._shutdown(in_order, deadline)
        except TimeoutError:
            self.timed_out = True
            if self.order is not None:
                self.order.ended(self)  # (the loops waiting for their turn go on)
            logger.error("Application shutdown did not complete in time (--timeout-graceful-shutdown); abandoned.")

    async def _shutdown(self, in_order: bool, deadline: float | None) -> None:
        if not self.supported or self.task is None or self.task.done():
            if self.order is not None:
                self.order.ended(self)
            return
        order = self.order
        if order is not None and in_order:
            await order.turn(self, deadline)  # the lifespans started after this one go first
        try:
            self._answer = asyncio.get_running_loop().create_future()
            await self._inbox.put({"type": "lifespan.shutdown"})
            kind, message = await self._answer
        finally:
            if order is not None:
                order.ended(self)
        if kind in ("lifespan.shutdown.failed", "error"):
            logger.error("Application shutdown failed (%s): %s", self.where, (message or "").rstrip())

    async def _main(self, scope: dict) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:  # the app's own error: report it, never crash the loop
            # Each failure is said once: what the app reported (Starlette sends the traceback as the failure's
            # message, then raises it again), or what it raised while startup or shutdown waited for an answer
            # (its traceback is then the failure's message), or else what it raised, here.
            if self.mode == "auto" and not self._sent_any:
                self._settle("unsupported", None)
            elif self._failed_sent:
                pass
            elif self._answer is not None and not self._answer.done():
                self._settle("error", "".join(traceback.format_exception(exc)))
            else:
                logger.error("Exception in 'lifespan' protocol (%s)", self.where, exc_info=exc)
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
        self._failed_sent = self._failed_sent or kind.endswith(".failed")
        self._settle(kind, message.get("message", ""))
