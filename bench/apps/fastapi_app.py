"""The json scenario through FastAPI: the same 1 KB JSON body, parsed by FastAPI, in an async and a def endpoint."""

from typing import Any

from fastapi import Body, FastAPI

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/async")
async def post_async(doc: dict[str, Any] = Body(...)):
    return {"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))}


@app.post("/sync")
def post_sync(doc: dict[str, Any] = Body(...)):
    return {"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))}
