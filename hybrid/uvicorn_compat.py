"""uvicorn's options that hybrid takes so a uvicorn command line works unchanged (docs/uvicorn.md).

Those that mean something here are honoured elsewhere (--header in the HTTP/1.1 protocol, --reload-delay by the
reloader, --interface asgi2 by ``adapt_interface``, --env-file by ``load_env_file``); the others are accepted and
``notes`` says, in one line each, what hybrid does instead.
"""

from __future__ import annotations

import inspect
import os
import ssl
from typing import Any

# ssl.PROTOCOL_TLS (2) and PROTOCOL_TLS_SERVER (17, uvicorn's default) negotiate the best version: what hybrid does.
SSL_VERSIONS_HONOURED = (int(ssl.PROTOCOL_TLS), int(ssl.PROTOCOL_TLS_SERVER))


def notes(config) -> list[tuple[str, str]]:
    """(level, line) for each uvicorn option given that hybrid does not use as such."""
    out = []
    if config.loop in ("asyncio", "zuvloop"):
        out.append(("warning", f"--loop {config.loop} cannot be honoured: hybrid's loops are uvloop's (made "
                               "thread-aware, hybrid/loops.py); serving on uvloop"))
    elif config.loop == "none":
        out.append(("info", "--loop none: hybrid makes its own loops (uvloop) in every thread"))
    if config.http in ("h11", "zttp"):
        out.append(("info", f"--http {config.http}: HTTP/1.1 only (as --http 1.1), parsed with httptools "
                            "(hybrid's own h1 protocol)"))
    if config.uvicorn_http2:
        out.append(("info", "--http2: HTTP/2 is served (ALPN h2 over TLS, h2c with prior knowledge), as it is "
                            "by default with --http auto"))
    if config.reset_contextvars:
        out.append(("info", "--reset-contextvars: the asyncio context leak it works around does not occur on "
                            "uvloop, hybrid's loop; the option has no effect"))
    if config.ws in ("websockets", "websockets-sansio"):
        out.append(("info", f"--ws {config.ws}: hybrid's WebSockets are wsproto, served by its async pool"))
    if config.ws_max_queue is not None:
        out.append(("info", "--ws-max-queue: hybrid keeps no incoming WebSocket queue; it reads a message when "
                            "the app receives (TCP backpressure, --ws-max-size bounds one message)"))
    if config.timeout_notify is not None:
        out.append(("info", "--timeout-notify: hybrid's supervisor replaces a worker that does not answer within "
                            f"--timeout-worker-healthcheck ({config.timeout_worker_healthcheck:g} s)"))
    if config.ssl_version is not None and config.ssl_version not in SSL_VERSIONS_HONOURED:
        out.append(("warning", f"--ssl-version {config.ssl_version} cannot be honoured: hybrid negotiates "
                               "TLS 1.2 or later (ssl.PROTOCOL_TLS_SERVER)"))
    return out


# uvicorn options that take a boolean value (click's type=bool: '--ws-per-message-deflate false'), which hybrid has
# as a --flag / --no-flag pair; the words click takes for one.
BOOL_VALUE_FLAGS = ("--ws-per-message-deflate",)
_TRUE = ("true", "1", "yes", "y", "on", "t")
_FALSE = ("false", "0", "no", "n", "off", "f")


def bool_values_as_flags(argv: list[str]) -> list[str]:
    """uvicorn's '--ws-per-message-deflate false' (or '=false') as hybrid's '--no-ws-per-message-deflate'."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in BOOL_VALUE_FLAGS:
            if not eq and i + 1 < len(argv) and argv[i + 1].lower() in _TRUE + _FALSE:
                value, eq = argv[i + 1], "="
                i += 1
            if eq and value.lower() in _TRUE + _FALSE:
                arg = name if value.lower() in _TRUE else "--no-" + name[2:]
        out.append(arg)
        i += 1
    return out


def parse_header(text: str) -> tuple[bytes, bytes]:
    """'NAME:VALUE' (uvicorn's --header) as a lower-case name and a value; ValueError says why not."""
    from hybrid.request_id import valid_header_name

    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not valid_header_name(name):
        raise ValueError(f"{text!r} is not NAME:VALUE with an HTTP header name")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{text!r}: a header value cannot hold CR, LF or NUL")
    return name.lower().encode("latin-1"), value.encode("latin-1")


def header_block(headers) -> bytes | None:
    """The --header lines as written once into every response head (None: no extra headers)."""
    if not headers:
        return None
    return b"".join(name + b": " + value + b"\r\n" for name, value in map(parse_header, headers))


def load_env_file(path: str) -> None:
    """KEY=VALUE lines into os.environ, as uvicorn's --env-file (python-dotenv's load_dotenv) does: variables
    already set win; '#' comments, blank lines, 'export ' and single or double quotes are understood (no
    ${VAR} interpolation)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[7:].lstrip()
            key, sep, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                continue
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                quote, value = value[0], value[1:-1]
                if quote == '"':
                    value = value.replace("\\n", "\n").replace('\\"', '"')
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            os.environ.setdefault(key, value)


def _is_asgi2(app: Any) -> bool:
    # Only what cannot be ASGI 3: a class whose instances are not awaitable (app(scope) makes the instance), or a
    # plain function that is not async. Any other object stays ASGI 3 as before (uvicorn would also wrap an object
    # whose __call__ is a sync def returning a coroutine: middleware does that).
    if inspect.isclass(app):
        return not hasattr(app, "__await__")
    if not inspect.isfunction(app) or inspect.iscoroutinefunction(app):
        return False
    try:  # app(scope): ASGI 2; a sync app(scope, receive, send) is a mistake the importer names instead
        inspect.signature(app).bind(None)
        return True
    except TypeError:
        return False


def adapt_interface(app: Any, interface: str) -> Any:
    """The app as ASGI 3: an ASGI 2 app (``app(scope)`` returns ``instance(receive, send)``) is wrapped."""
    if interface == "asgi3" or (interface == "auto" and not _is_asgi2(app)):
        return app
    asgi2 = app

    async def asgi2_adapter(scope, receive, send):
        instance = asgi2(scope)
        await instance(receive, send)

    return asgi2_adapter


# uvicorn.run()/Config keywords spelled differently here; lists where hybrid keeps tuples.
RENAMED = {"h11_max_incomplete_event_size": "max_incomplete_event_size", "http2": "uvicorn_http2"}
TUPLES = ("reload_dirs", "reload_includes", "reload_excludes", "async_paths")


def run_options(options: dict) -> dict:
    """uvicorn.run()'s keywords as ServerConfig's: renamed ones, a str or list where a tuple is kept, and
    ``callback_notify`` (uvicorn calls it from its supervisor; hybrid's supervisor checks workers itself)."""
    import logging

    out = {}
    for key, value in options.items():
        key = RENAMED.get(key, key)
        if key == "callback_notify":
            if value is not None:
                logging.getLogger("hybrid.error").warning(
                    "callback_notify is not called: hybrid's supervisor checks its workers itself "
                    "(timeout_worker_healthcheck)")
            continue
        if key in TUPLES and isinstance(value, (str, list)):
            value = (value,) if isinstance(value, str) else tuple(value)
        out[key] = value
    return out
