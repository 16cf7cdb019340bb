"""The framework scenario through Litestar: GET / answers plain text; POST /json parses the 1 KB JSON body and
answers a small JSON document."""

from typing import Any

from litestar import Litestar, MediaType, get, post


@get("/", media_type=MediaType.TEXT)
async def hello() -> str:
    return "Hello, world!"


@post("/json", status_code=200)
async def echo(data: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "id": data.get("id"), "items": len(data.get("items", ()))}


app = Litestar(route_handlers=[hello, echo], openapi_config=None)
