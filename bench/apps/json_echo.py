"""POST a JSON document -> parsed with json.loads, answered with a small JSON object."""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    raw = b"".join(chunks)
    try:
        doc = json.loads(raw)
        answer = {"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))}
        status = 200
    except (ValueError, AttributeError):
        answer = {"ok": False}
        status = 400
    body = json.dumps(answer).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
