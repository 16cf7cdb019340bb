"""File responses through the ``http.response.pathsend`` extension (tests/test_pathsend.py).

FILES_DIR (env) is the directory the files live in.
- ``/fr/NAME``: Starlette's ``FileResponse`` for FILES_DIR/NAME (it sends pathsend when the scope offers it);
  ``/pool/fr/NAME`` the same (the tests route ``/pool/*`` to the async pool with ``--async-path``).
- ``/raw/NAME?cl=N``: the raw ASGI messages: a start with ``content-length: N`` if given (none otherwise),
  then pathsend. Answers HEAD the same way (the server must send the head only). ``&then=S``: then blocks its
  thread S seconds in the same step (a held response leaves after it).
- ``/stale/NAME?to=N``: what a file changed after the app took its size looks like: the app stats the file,
  truncates or extends it to N bytes, then sends the size it saw as ``content-length`` and pathsend.
- ``/ext``: the scope's extension names, as text (one per line).
- ``/sleep?s=S``: blocks its thread in ``time.sleep`` (a handler that blocks), then answers ``slept``.
- ``/text``: a short text answer (keep-alive after a file).
"""

import os
import time

from starlette.responses import FileResponse

FILES_DIR = os.environ.get("FILES_DIR", "/nonexistent")


def _query(scope) -> dict:
    return dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)


async def _text(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.startswith("/pool/"):
        path = path[5:]
    if path.startswith("/fr/"):
        await FileResponse(os.path.join(FILES_DIR, path[4:]))(scope, receive, send)
    elif path.startswith("/raw/"):
        headers = [(b"content-type", b"application/octet-stream")]
        cl = _query(scope).get("cl")
        if cl is not None:
            headers.append((b"content-length", cl.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": os.path.join(FILES_DIR, path[5:])})
        if "then" in _query(scope):
            time.sleep(float(_query(scope)["then"]))
    elif path.startswith("/stale/"):
        target = os.path.join(FILES_DIR, path[7:])
        seen = os.stat(target).st_size
        os.truncate(target, int(_query(scope)["to"]))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % seen)]})
        await send({"type": "http.response.pathsend", "path": target})
    elif path == "/ext":
        await _text(send, "\n".join(sorted(scope["extensions"])).encode())
    elif path == "/sleep":
        time.sleep(float(_query(scope).get("s", "1")))
        await _text(send, b"slept")
    else:
        await _text(send, b"text")
