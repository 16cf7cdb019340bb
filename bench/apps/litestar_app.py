"""The json scenario through Litestar: parse the 1 KB JSON body, answer a small JSON document."""

from typing import Any

from litestar import Litestar, post


@post("/json", status_code=200)
async def echo(data: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "id": data.get("id"), "items": len(data.get("items", ()))}


app = Litestar(route_handlers=[echo], openapi_config=None)
