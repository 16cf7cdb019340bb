"""An app for the ASGI extension tests (tests/test_extensions.py, tests/test_tls_extension.py): early hints,
trailers, the TLS extension. Each route says in its response what the server did with what it sent."""

import asyncio
import json
from urllib.parse import parse_qs

from tests.apps import plain_lifespan

START = "http.response.start"
BODY = "http.response.body"


def _ext_header(scope) -> tuple[bytes, bytes]:
    return (b"x-extensions", ",".join(sorted(scope["extensions"])).encode())


async def _plain(send, scope, body: bytes, status: int = 200) -> None:
    await send({"type": START, "status": status, "headers": [(b"content-type", b"text/plain"), _ext_header(scope)]})
    await send({"type": BODY, "body": body})


async def _refused(send, scope, exc: Exception) -> None:
    await _plain(send, scope, f"refused {type(exc).__name__}: {exc}".encode())


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        return await plain_lifespan(receive, send)
    if kind == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({
            "scheme": scope["scheme"], "tls": scope["extensions"].get("tls")})})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/ext":
        await _plain(send, scope, b"ok")
    elif path == "/hint":
        links = [link.encode() for link in query.get("links", "</a.css>; rel=preload").split("|")]
        try:
            await send({"type": "http.response.early_hint", "links": links})
        except (ValueError, TypeError, RuntimeError) as exc:
            await _refused(send, scope, exc)
            return
        await asyncio.sleep(float(query.get("sleep", 0)))  # (a hint sent before the app waits: it is out now)
        await _plain(send, scope, b"final")
    elif path == "/hint-after-start":
        await send({"type": START, "status": 200, "headers": [_ext_header(scope)]})
        try:
            await send({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]})
            outcome = b"sent"
        except RuntimeError as exc:
            outcome = f"refused {exc}".encode()
        await send({"type": BODY, "body": outcome})
    elif path in ("/trailers", "/stream/trailers"):
        # body: "one" (one body message), or N chunks with more_body=True; trailers: name=value|name=value,
        # split over several messages with ";" (more_trailers=True between them)
        headers = [(b"content-type", b"text/plain"), _ext_header(scope)]
        if "length" in query:
            headers.append((b"content-length", query["length"].encode()))
        await send({"type": START, "status": int(query.get("status", 200)), "headers": headers, "trailers": True})
        chunks = int(query.get("chunks", 1))
        for i in range(chunks):
            await send({"type": BODY, "body": b"part%d;" % i, "more_body": True})
            if chunks > 1:
                await asyncio.sleep(0.02)  # (past the worker's hold of a first chunk: a real stream)
        await send({"type": BODY, "body": b"end", "more_body": False})
        groups = query.get("trailers", "x-checksum=abc").split(";")
        for n, group in enumerate(groups):
            fields = [tuple(part.encode().split(b"=", 1)) for part in group.split("|") if part]
            await send({"type": "http.response.trailers", "headers": fields, "more_trailers": n < len(groups) - 1})
    elif path == "/trailers-no-headers":
        # a start message with no "headers" key at all (it is optional): trailers still declared
        await send({"type": START, "status": 200, "trailers": True})
        await send({"type": BODY, "body": b"bare"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
    elif path == "/trailers-misuse":
        # trailers without declaring them, or a body after the last body: refused with a RuntimeError
        await send({"type": START, "status": 200, "headers": [_ext_header(scope)],
                    "trailers": query.get("declare") == "1"})
        try:
            if query.get("declare") == "1":
                await send({"type": "http.response.trailers", "headers": []})  # before the last body
            else:
                await send({"type": BODY, "body": b"x", "more_body": True})
                await send({"type": "http.response.trailers", "headers": []})
            outcome = "sent"
        except RuntimeError as exc:
            outcome = f"refused {exc}"
        # (the response still ends properly, with its trailers if declared)
        await send({"type": BODY, "body": outcome.encode()})
        if query.get("declare") == "1":
            await send({"type": "http.response.trailers", "headers": []})
    elif path == "/tls":
        await _plain(send, scope, json.dumps(scope["extensions"].get("tls")).encode())
    elif path == "/tls-mutate":
        # an app that changes its scope's tls extension: the next request's must not see it
        tls = scope["extensions"]["tls"]
        tls["client_cert_chain"].clear()
        tls["client_cert_name"] = "changed"
        await _plain(send, scope, b"changed")
    elif path == "/cut":
        # a response cut short: the app fails mid-body (an HTTP/1.0 client reads it to the close)
        await send({"type": START, "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": BODY, "body": b"first part", "more_body": True})
        await asyncio.sleep(0.05)
        raise RuntimeError("failed mid-body (expected by the test)")
    else:
        await _plain(send, scope, b"not found", 404)
