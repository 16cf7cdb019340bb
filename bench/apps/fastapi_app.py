"""The framework scenario through FastAPI, in an async and a def endpoint each: GET answers plain text, POST parses
the json scenario's 1 KB JSON body and answers a small JSON document."""

from typing import Any

from fastapi import Body, FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/async", response_class=PlainTextResponse)
async def get_async():
    return "Hello, world!"


@app.get("/sync", response_class=PlainTextResponse)
def get_sync():
    return "Hello, world!"


@app.post("/async")
async def post_async(doc: dict[str, Any] = Body(...)):
    return {"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))}


@app.post("/sync")
def post_sync(doc: dict[str, Any] = Body(...)):
    return {"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))}
