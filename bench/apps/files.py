"""The files scenario: Starlette's FileResponse for a 16 KiB and a 1 MiB file (``/16k``, ``/1m``).

A server that offers ``http.response.pathsend`` (hybrid, granian) sends the file itself; the others get it in
Starlette's 64 KiB chunks. The files are made once per machine (the same bytes for every server and round).
"""

import os
import tempfile

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

SIZES = {"16k": 16 * 1024, "1m": 1024 * 1024}
DIR = os.path.join(tempfile.gettempdir(), f"hybrid-bench-files-{os.getuid()}")


def _make(name: str, size: int) -> str:
    path = os.path.join(DIR, name)
    if not os.path.exists(path) or os.path.getsize(path) != size:
        os.makedirs(DIR, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(bytes(range(256)) * (size // 256))
        os.replace(tmp, path)  # (worker processes may race: each writes its own, the last rename wins)
    return path


PATHS = {name: _make(f"{name}.bin", size) for name, size in SIZES.items()}


def _route(name: str) -> Route:
    path = PATHS[name]

    async def endpoint(request):
        return FileResponse(path, media_type="application/octet-stream")

    return Route(f"/{name}", endpoint)


app = Starlette(routes=[_route(name) for name in SIZES])
