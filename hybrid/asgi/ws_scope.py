"""The ``websocket`` scope of an upgrade request, and the request head again for wsproto's handshake."""

from __future__ import annotations

from urllib.parse import unquote

from hybrid.asgi.http import ASGI_VERSION
from hybrid.request_id import REQUEST_ID_KEY
from hybrid.tls_info import tls_extension

_EXTENSIONS = {"websocket.http.response": {}}


def build_websocket_scope(conn, req, root_path: str, state: dict) -> dict:
    """The ASGI ``websocket`` scope of an upgrade request (``conn`` gives the addresses)."""
    raw_path = req.path
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = unquote(path, encoding="utf-8", errors="surrogateescape")
    subprotocols = []
    for name, value in req.headers:
        if name == b"sec-websocket-protocol":
            subprotocols.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    scope = {
        "type": "websocket",
        "asgi": ASGI_VERSION,
        "http_version": req.http_version,
        "scheme": "wss" if conn.scheme == "https" else "ws",
        "server": conn.server_addr,
        "client": conn.client_addr,
        "root_path": root_path,
        "path": root_path + path if root_path else path,
        "raw_path": root_path.encode() + raw_path if root_path else raw_path,
        "query_string": req.query,
        "headers": req.headers,
        "subprotocols": subprotocols,
        "state": state.copy(),
        "extensions": {**_EXTENSIONS, REQUEST_ID_KEY: {"id": conn.server.request_ids.for_headers(req.headers)}},
    }
    if conn.scheme == "https":
        scope["extensions"]["tls"] = tls_extension(conn)
    if req.forwarded and conn.proxy is not None:
        conn.proxy.apply(scope)
    return scope


def request_head(req) -> bytes:
    """The upgrade request's head as bytes again, for wsproto's handshake (it parses HTTP itself)."""
    lines = [b"%s %s HTTP/%s" % (req.method, req.target, req.http_version.encode())]
    lines.extend(name + b": " + value for name, value in req.headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"
