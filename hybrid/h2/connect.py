"""CONNECT on an HTTP/2 connection: RFC 8441's extended CONNECT opens a WebSocket, everything else is refused.

What each CONNECT gets (decided before any app code runs):
- ``:protocol websocket`` with WebSockets on (SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 went out in our SETTINGS):
  an ASGI ``websocket`` scope, served by ``H2WebSocket`` (websocket.py) on the pool's loop.
- ``:protocol`` while WebSockets are off (``--ws none``: the setting was never sent): a stream error
  PROTOCOL_ERROR, as RFC 8441 section 3 says a peer that did not send the setting treats it (malformed).
- An extended CONNECT without ``:path`` or ``:scheme`` (or otherwise malformed): a stream error PROTOCOL_ERROR
  (RFC 8441 section 4; session.py asks ``is_extended_connect`` before its connection-wide GOAWAY).
- An ordinary CONNECT (no ``:protocol``, RFC 9113 section 8.5) or another ``:protocol``: 501 Not Implemented.
  The request is well-formed, we just do not offer the function: this server is no proxy and speaks no other
  protocol, for any resource (RFC 9110 section 15.6.2); 405 would need an Allow header the app alone could give.
  The 501 is followed by RST_STREAM NO_ERROR: a CONNECT stream never ends from the client's side by itself,
  and the reset tells it to stop sending (RFC 9113 section 8.1).
"""

from __future__ import annotations

from urllib.parse import unquote

from h2.errors import ErrorCodes
from h2.exceptions import H2Error

from hybrid.asgi.http import ASGI_VERSION
from hybrid.request_id import REQUEST_ID_KEY


def is_extended_connect(headers) -> bool:
    """The header block is a CONNECT carrying ``:protocol`` (only looked at once a block failed its checks)."""
    connect = protocol = False
    for name, value in headers:
        if name == b":method":
            connect = value == b"CONNECT"
        elif name == b":protocol":
            protocol = True
    return connect and protocol


def connect_stream(session, sid: int, headers, path: bytes | None, fields: list):
    """The stream a CONNECT opens (an ``H2WebSocket``, not started yet), or None once it was answered."""
    protocol = None
    for name, value in headers:
        if name == b":protocol":
            protocol = value
            break
    h2 = session.h2
    if protocol is not None and not session.websockets:
        h2.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)  # (we never sent SETTINGS_ENABLE_CONNECT_PROTOCOL)
        return None
    if protocol != b"websocket":
        h2.send_headers(sid, [(b":status", b"501"), (b"content-length", b"0")], end_stream=True)
        try:
            h2.reset_stream(sid, ErrorCodes.NO_ERROR)
        except H2Error:
            pass  # (the client had ended its side too: the stream is closed already)
        return None
    from hybrid.h2.websocket import H2WebSocket  # (wsproto is imported on the first WebSocket only)

    return H2WebSocket(session, sid, websocket_scope(session, path, fields))


def websocket_scope(session, path: bytes, fields: list) -> dict:
    """The ASGI ``websocket`` scope of an extended CONNECT: the keys the HTTP/1.1 upgrade's scope has
    (hybrid/asgi/ws_scope.py), http_version "2"."""
    raw_path, _, query = path.partition(b"?")
    text = raw_path.decode("latin-1")
    if "%" in text:
        text = unquote(text, encoding="utf-8", errors="surrogateescape")
    subprotocols = []
    for name, value in fields:
        if name == b"sec-websocket-protocol":
            subprotocols.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    server = session.server
    root = server.root_path
    https = session.scheme == "https"
    scope = {
        "type": "websocket",
        "asgi": ASGI_VERSION,
        "http_version": "2",
        "scheme": "wss" if https else "ws",
        "server": session.server_addr,
        "client": session.client_addr,
        "root_path": root,
        "path": root + text if root else text,
        "raw_path": root.encode() + raw_path if root else raw_path,
        "query_string": query,
        "headers": fields,
        "subprotocols": subprotocols,
        "state": session.pool.state.copy(),
        "extensions": {"websocket.http.response": {}, REQUEST_ID_KEY: {"id": server.request_ids.for_headers(fields)}},
    }
    if https:
        from hybrid.tls_info import tls_extension

        scope["extensions"]["tls"] = tls_extension(session)
    if session.proxy is not None:  # a trusted proxy's X-Forwarded-* / Forwarded (--forwarded-allow-ips)
        session.proxy.apply(scope)
    return scope
