"""An app that raises on the lifespan scope (like many apps that know nothing about lifespan)."""

MESSAGE = "lifespan-raise-marker-91c2: no lifespan here"


async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError(MESSAGE)
    body = b"served without lifespan"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
