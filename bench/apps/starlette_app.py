"""The framework scenario through Starlette: GET / answers plain text; POST /json parses the 1 KB JSON body and
answers a small JSON document."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("Hello, world!")


async def post(request):
    doc = await request.json()
    return JSONResponse({"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))})


app = Starlette(routes=[Route("/", hello), Route("/json", post, methods=["POST"])])
