"""Apps for tests/test_uvicorn_flags.py: an ASGI 2 app (a class: app(scope) makes the instance) and an ASGI 3 app
that answers with an environment variable (--env-file)."""

import os


class ASGI2App:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        body = f"asgi2 {self.scope['type']} {self.scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


async def env_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = os.environ.get("DROPIN_FROM_ENV_FILE", "unset").encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def asgi2_function(scope):
    """ASGI 2 as a plain function: app(scope) returns the coroutine function."""

    async def instance(receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": f"asgi2 {scope['type']} {scope['path']}".encode()})

    return instance


def sync_mistake(scope, receive, send):
    """Not ASGI 2 (it takes receive and send) and not ASGI 3 (not async): refused at load, naming the mistake."""


STARTUP_MARKER = "startup-raised-marker-5d1e"


async def startup_reports_and_raises(scope, receive, send):
    """As Starlette's lifespan does when startup raises: lifespan.startup.failed with the traceback as its
    message, then the exception raised again."""
    if scope["type"] == "lifespan":
        await receive()
        import traceback

        try:
            raise RuntimeError(STARTUP_MARKER)
        except RuntimeError:
            await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
            raise


async def startup_raises(scope, receive, send):
    """Raises during lifespan startup without reporting it (with --lifespan on: a startup failure)."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError(STARTUP_MARKER)


async def held(scope, receive, send):
    """GET /hold answers once the file named by HELD_RELEASE exists (at most 10 s); anything else at once."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/hold":
        import asyncio

        for _ in range(500):
            if os.path.exists(os.environ["HELD_RELEASE"]):
                break
            await asyncio.sleep(0.02)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"released"})
