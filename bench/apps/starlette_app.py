"""The json scenario through Starlette: parse the 1 KB JSON body, answer a small JSON document."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def post(request):
    doc = await request.json()
    return JSONResponse({"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))})


app = Starlette(routes=[Route("/json", post, methods=["POST"])])
