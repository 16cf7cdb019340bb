"""Command line: ``hybrid [MODULE:APP] [options]``. Each flag maps 1:1 onto a ServerConfig field.

Every option can also come from a TOML file (``--config hybrid.toml``, or ``HYBRID_CONFIG``) and from
``HYBRID_*`` environment variables: the command line wins over the environment, which wins over the file
(docs/configuration.md). Each value is checked where it comes from, and a bad one is a one-line error naming the
option and its source, exit code 2, as argparse does for the command line.
"""

from __future__ import annotations

import argparse
import os
import sys

from hybrid import __version__
from hybrid.cli_sections import Sections
from hybrid.config import (
    ACCESS_LOG_FORMATS,
    HTTP_PROTOCOLS,
    INTERFACES,
    LIFESPAN_MODES,
    LOG_LEVELS,
    LOOPS,
    MODES,
    WS_PROTOCOLS,
    ConfigError,
    ServerConfig,
)

ENV_PREFIX = "HYBRID_"
# Not options of the server: never read from a file or the environment (HYBRID_CONFIG names the file).
NOT_CONFIGURABLE = ("help", "version", "config")
# Options whose flag takes a comma-separated list: a file may give them as a list of strings too.
COMMA_LISTS = ("forwarded_allow_ips",)
# Repeatable options whose values may hold commas (an environment variable gives one value, not a list).
NO_SPLIT = ("headers",)


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (no usage dump): 'hybrid: error: ...', exit 2."""

    def error(self, message: str):
        message = " ".join(message.split())  # (a TOML decode error may span lines)
        if message.startswith("unrecognized arguments"):
            message += " ('hybrid --help' lists the options)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hybrid",
        usage="hybrid [OPTIONS] [APP]",
        description="Serve an ASGI application (FastAPI, Starlette, Django, Litestar, ...) over HTTP/1.1 and "
                    "WebSockets: 'hybrid main:app' serves the object 'app' of main.py on http://127.0.0.1:8000. "
                    "A handler that blocks does not stall the others. Options are grouped below as uvicorn's "
                    "are, and uvicorn's own options work (docs/uvicorn.md).",
    )
    s = Sections(p)
    s.add_argument("--version", action="version", version=f"hybrid {__version__}",
                   help="Print the version and exit.")
    s.add_argument("--config", default=None, metavar="FILE",
                   help="Read options from this TOML file (top-level keys named like the flags: port = 8001, "
                        "async-path = ['/events/*']); HYBRID_* environment variables and the command line win "
                        "over it. Also HYBRID_CONFIG.")
    s.add_argument("app", nargs="?", default="hybrid.demo:app", metavar="APP",
                   help="The application as MODULE:ATTRIBUTE (default: the built-in demo, hybrid.demo:app).")
    s.add_argument("--factory", action="store_true",
                   help="Treat APP as a factory: call it with no arguments to get the application.")
    s.add_argument("--app-dir", default=None, help="Look for the application's module in this folder first.")
    s.add_argument("--host", default="127.0.0.1", help="Bind the socket to this address (default 127.0.0.1).")
    s.add_argument("--port", type=_positive_int, default=8000, help="Bind the socket to this port (default 8000).")
    s.add_argument("--uds", default=None, help="Bind to this unix domain socket path instead of host and port.")
    s.add_argument("--fd", type=_positive_int, default=None,
                   help="Serve the already-listening socket passed as this file descriptor.")
    s.add_argument("--backlog", type=_positive_int, default=2048,
                   help="How many connections may wait to be accepted (default 2048).")
    s.add_argument("--threads", type=_positive_int, default=None,
                   help="Serving threads per worker process, each with its own set of connections (default 1: use "
                        "--workers for more cores; with PYTHON_GIL=0 only 1, and no spares, is allowed yet).")
    s.add_argument("--max-threads", type=_positive_int, default=None,
                   help="Most threads in all, counting spares that take over from blocked handlers "
                        "(default: --threads + 32; without the GIL, --threads).")
    s.add_argument("--blocking-threshold", type=_seconds, default=0.001,
                   help="Seconds a handler may hold its thread before its other connections move to a spare "
                        "thread (default 0.001).")
    s.add_argument("--gc-threshold", type=_positive_int, default=10000,
                   help="Collect the youngest generation of Python objects after this many net allocations "
                        "(CPython's default is 700 before 3.13 and 2000 in 3.13: with many requests in flight either "
                        "scans their live objects over and over). Set once the app is imported, unless the app set "
                        "thresholds itself; 0 leaves the interpreter's (default 10000).")
    s.add_argument("--blocking-stacks", action=argparse.BooleanOptionalAction, default=True,
                   help="Read the stack of a blocked handler while it blocks and log where it blocked, once per "
                        "route and code location, with counters (default on; docs/blocking.md).")
    s.add_argument("--lifespan", choices=LIFESPAN_MODES, default="auto",
                   help="Run the ASGI lifespan protocol: auto (if the app supports it), on, off.")
    s.add_argument("--root-path", default="", help="Path prefix the application is mounted at, e.g. /api.")
    s.add_argument("--timeout-keep-alive", type=_seconds, default=5.0,
                   help="Close idle keep-alive connections after this many seconds (default 5).")
    s.add_argument("--timeout-request-head", type=_seconds, default=20.0,
                   help="Answer 408 and close when a request head is still incomplete this many seconds after its "
                        "first byte (slow or stalled clients; default 20).")
    s.add_argument("--timeout-request-body", type=_seconds, default=30.0,
                   help="Answer 408 and close when the app waits for a request body and the client has sent none "
                        "of it for this many seconds, or, once the body has taken this long, it averages under 500 "
                        "bytes a second (stalled and trickled uploads; default 30). Also how long a body the app "
                        "answered without reading is read and dropped before the connection closes.")
    s.add_argument("--timeout-write-stall", type=_seconds, default=60.0,
                   help="Close a connection whose client has taken none of the response for this many seconds, "
                        "counted from the last bytes it took (a client that stopped reading; a slow but steady one "
                        "is not cut, but its TCP stack reports progress only in steps of about half its receive "
                        "buffer: keep this above that many bytes at the slowest rate served; default 60).")
    s.add_argument("--timeout-graceful-shutdown", type=_seconds, default=None,
                   help="On shutdown, wait at most this many seconds for in-flight requests, streams and lifespan "
                        "shutdown, all together (default: requests as long as they take, streams 5 s, lifespan "
                        "shutdown 10 s); exit code 4 when something was cut short.")
    s.add_argument("--timeout-startup", type=_seconds, default=60.0,
                   help="Give up (exit 3) when lifespan startup has not completed within this many seconds "
                        "(default 60). Nothing is accepted before startup completes.")
    s.add_argument("--workers", type=_positive_int, default=1,
                   help="Worker processes sharing the listening socket, under a supervisor (default 1: no supervisor).")
    s.add_argument("--reload", action="store_true",
                   help="Development: restart the worker when the app's files change (needs watchfiles).")
    s.add_argument("--reload-dir", dest="reload_dirs", action="append", default=[],
                   help="Folder to watch for --reload (repeatable; default: the current folder).")
    s.add_argument("--reload-include", dest="reload_includes", action="append", default=[],
                   help="Glob of files whose change triggers --reload (repeatable; default '*.py').")
    s.add_argument("--reload-exclude", dest="reload_excludes", action="append", default=[],
                   help="Glob of files --reload ignores (repeatable; default: hidden files and editor swap files).")
    s.add_argument("--limit-max-requests", type=_positive_int, default=None,
                   help="Recycle a worker process gracefully after about this many requests (with jitter).")
    s.add_argument("--timeout-worker-healthcheck", type=_seconds, default=5.0,
                   help="Replace a worker process whose threads do not answer the supervisor within this many "
                        "seconds (default 5).")
    s.add_argument("--async-path", dest="async_paths", action="append", default=[],
                   help="Serve requests whose path matches this glob (e.g. '/events/*') from the async pool, "
                        "where streams never wait for a blocked handler (repeatable). Requests accepting "
                        "text/event-stream and routes seen streaming go there anyway.")
    s.add_argument("--mode", choices=MODES, default="hybrid",
                   help="hybrid: serve requests inline in worker threads, streams and WebSockets in the async pool "
                        "(default). async: serve everything on one event loop, like a classic asyncio server, for "
                        "apps whose async resources cannot be made per loop.")
    s.add_argument("--limit-request-body", type=_positive_int, default=None,
                   help="Largest request body in bytes; a larger one is answered 413 before it is read, or as "
                        "soon as a chunked body passes the limit (default: no limit).")
    s.add_argument("--limit-concurrency", type=_positive_int, default=None,
                   help="Most requests and WebSockets the app handles at once in one worker process; more are "
                        "answered 503 with Retry-After at once instead of queueing (default: no limit).")
    s.add_argument("--limit-connections", type=_positive_int, default=None,
                   help="Most open connections per worker process; past it, new connections wait in the listen "
                        "backlog until one closes (default: no limit).")
    s.add_argument("--max-incomplete-event-size", "--h11-max-incomplete-event-size", type=_positive_int,
                   dest="max_incomplete_event_size", default=16384,
                   help="Largest request head (request line and headers) in bytes; a larger one is answered 431 "
                        "(default 16384).")
    s.add_argument("--ws", choices=WS_PROTOCOLS, default="wsproto",
                   help="WebSocket protocol implementation: wsproto (served by the async pool, over HTTP/1.1 "
                        "upgrades and HTTP/2 extended CONNECT, RFC 8441), or none to decline upgrades, so upgrade "
                        "requests reach the app as plain HTTP, and not to offer RFC 8441 (default wsproto).")
    s.add_argument("--ws-max-size", type=_positive_int, default=16 * 1024 * 1024,
                   help="Largest incoming WebSocket message in bytes; a larger one closes with 1009 (default 16 MiB).")
    s.add_argument("--ws-ping-interval", type=_seconds, default=20.0,
                   help="Send a WebSocket keepalive ping after this many seconds (default 20; 0: no pings).")
    s.add_argument("--ws-ping-timeout", type=_seconds, default=20.0,
                   help="Close a WebSocket (1011) whose peer does not answer a ping within this many seconds "
                        "(default 20; 0: no timeout).")
    s.add_argument("--ws-per-message-deflate", action=argparse.BooleanOptionalAction, default=True,
                   help="Offer WebSocket permessage-deflate compression, RFC 7692 (default on).")
    s.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=True,
                   help="Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto when the "
                        "peer is in --forwarded-allow-ips (default on).")
    s.add_argument("--proxy-forwarded", action=argparse.BooleanOptionalAction, default=False,
                   help="The proxy sets RFC 7239 Forwarded: read it (for, proto, host) instead of X-Forwarded-For "
                        "and -Proto (default off: a client's own Forwarded passes through nginx).")
    s.add_argument("--proxy-forwarded-host", action=argparse.BooleanOptionalAction, default=False,
                   help="The proxy sets X-Forwarded-Host: let it replace the Host header (default off: nginx "
                        "passes a client's own through).")
    s.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                   help="Comma-separated IP addresses and CIDR networks of proxies trusted to send proxy headers, "
                        "or '*' for all (default 127.0.0.1; unix socket peers are always trusted).")
    s.add_argument("--ws-open-timeout", type=_seconds, default=10.0,
                   help="Answer 500 and end the app's call when it has neither accepted nor closed a WebSocket "
                        "this many seconds after the upgrade request (default 10).")
    s.add_argument("--ws-close-timeout", type=_seconds, default=5.0,
                   help="Close the connection when the peer has not answered our WebSocket close frame within "
                        "this many seconds (default 5).")
    s.add_argument("--ssl-certfile", default=None,
                   help="Serve HTTPS (and wss) with this certificate chain file (PEM); TLS is off without it.")
    s.add_argument("--ssl-keyfile", default=None,
                   help="The certificate's private key (PEM), if not in --ssl-certfile.")
    s.add_argument("--ssl-keyfile-password", default=None, help="Password of an encrypted --ssl-keyfile.")
    s.add_argument("--ssl-ca-certs", default=None,
                   help="CA certificates (PEM) that client certificates are verified against.")
    s.add_argument("--ssl-cert-reqs", type=_positive_int, default=0,
                   help="Client certificates: 0 not asked, 1 optional, 2 required (default 0; 1 and 2 need "
                        "--ssl-ca-certs).")
    s.add_argument("--ssl-ciphers", default=None,
                   help="OpenSSL cipher list for TLS 1.2 (default: Python's, forward secret AEAD suites only; "
                        "TLS 1.3 suites are OpenSSL's three, AES-128-GCM first).")
    s.add_argument("--timeout-tls-handshake", type=_seconds, default=10.0,
                   help="Close a connection whose TLS handshake is not done this many seconds after it was "
                        "accepted (checked once a second; default 10).")
    s.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="Logging level (default info).")
    s.add_argument("--log-config", default=None, metavar="FILE",
                   help="Configure logging from this file instead (logging.config.dictConfig from .json, or "
                        ".yaml/.yml when PyYAML is installed; fileConfig from .ini); uvicorn's log configs work "
                        "unchanged; --log-level and --access-log-format then do not apply.")
    s.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                   help="Log one line per request (default on).")
    s.add_argument("--access-log-format", choices=ACCESS_LOG_FORMATS, default="text",
                   help="text: uvicorn's line, 127.0.0.1:PORT - \"GET /path HTTP/1.1\" 200; json: one JSON "
                        "object per line with time, method, path, status, bytes, duration_ms, client, "
                        "request_id, where (worker or pool), http_version, and the server's own lines as JSON "
                        "too (default text).")
    s.add_argument("--use-colors", action=argparse.BooleanOptionalAction, default=None,
                   help="Colour the level names in the log (default: only when stderr is a terminal and NO_COLOR "
                        "is not set).")
    s.add_argument("--request-id-header", default=None, metavar="NAME",
                   help="Send each request's id in the response under this header, e.g. X-Request-ID, and read "
                        "a client's id from it (default: none sent; X-Request-ID is read).")
    s.add_argument("--metrics-port", type=_positive_int, default=None, metavar="PORT",
                   help="Serve Prometheus metrics (connections, requests by where they ran and in flight, "
                        "responses by status class, durations, handoffs, open streams and WebSockets, threads, "
                        "takeovers, blocked loops, disconnects) at http://HOST:PORT/metrics, HOST "
                        "being --host; needs prometheus-client; with --workers, served by the supervisor for all "
                        "workers (default: off).")
    s.add_argument("--server-header", action=argparse.BooleanOptionalAction, default=True,
                   help="Send 'server: hybrid' unless the app sets its own (default on).")
    s.add_argument("--date-header", action=argparse.BooleanOptionalAction, default=True,
                   help="Send a 'date' header unless the app sets its own (default on).")
    _add_uvicorn_options(s)
    return p


def _add_uvicorn_options(s: Sections) -> None:
    """uvicorn's remaining options, so its command lines work unchanged (docs/uvicorn.md)."""
    s.add_argument("--header", dest="headers", action="append", default=[], metavar="NAME:VALUE",
                   help="Send this header in every HTTP response (repeatable; a 'server' or 'date' one replaces "
                        "hybrid's; over HTTP/2 its name is lower-cased, and one HTTP/2 cannot carry is left out).")
    s.add_argument("--interface", choices=INTERFACES, default="auto",
                   help="The app's interface: asgi3, asgi2 (adapted to ASGI 3), auto (asgi2 for a class or a "
                        "plain function of scope alone, else asgi3); wsgi is refused (default auto).")
    s.add_argument("--env-file", default=None, metavar="FILE",
                   help="Load KEY=VALUE lines into the environment before the app is imported; variables "
                        "already set win (uvicorn's; no ${VAR} interpolation).")
    s.add_argument("--reload-delay", type=_seconds, default=None,
                   help="Seconds --reload waits for changes to settle before restarting (default 0.05).")
    s.add_argument("--loop", choices=LOOPS, default="auto",
                   help="uvicorn's event loop choice: hybrid always runs uvloop; asyncio is not honoured (a "
                        "warning says so).")
    s.add_argument("--http", choices=HTTP_PROTOCOLS, default="auto",
                   help="auto (default): HTTP/1.1 and HTTP/2 (ALPN h2 over TLS, h2c with prior knowledge on the plain "
                        "port); 1.1: HTTP/1.1 only. uvicorn's parser names httptools, h11 and zttp mean HTTP/1.1 only "
                        "(hybrid always parses HTTP/1.1 with httptools).")
    s.add_argument("--ws-max-queue", type=_positive_int, default=None,
                   help="uvicorn's incoming WebSocket queue: accepted, no effect (hybrid reads a message when the "
                        "app receives).")
    s.add_argument("--ssl-version", type=_positive_int, default=None,
                   help="uvicorn's ssl.PROTOCOL_* number: 2 and 17 are what hybrid does (TLS 1.2 or later); "
                        "another is not honoured (a warning says so).")
    s.add_argument("--timeout-notify", type=_seconds, default=None,
                   help="uvicorn's worker liveness timeout: accepted; hybrid uses --timeout-worker-healthcheck.")
    s.add_argument("--limit-max-requests-jitter", type=_positive_int, default=None,
                   help="Each worker recycles after --limit-max-requests plus a random 0 to this many requests "
                        "(default: a tenth of --limit-max-requests).")
    s.add_argument("--reset-contextvars", action="store_true",
                   help="uvicorn's workaround for an asyncio context leak that uvloop, hybrid's loop, does not "
                        "have: accepted, no effect.")
    s.add_argument("--http2", dest="uvicorn_http2", action="store_true",
                   help="uvicorn's HTTP/2 switch: serve HTTP/2 (ALPN h2 over TLS, h2c with prior knowledge) beside "
                        "HTTP/1.1 whatever --http names; --http auto, the default, does already.")


def _option_name(action: argparse.Action) -> str:
    """The name of an option in files and messages: its long flag without dashes ('port', 'async-path')."""
    longs = [o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")]
    return longs[0][2:] if longs else action.dest


def configurable_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.dest not in NOT_CONFIGURABLE]


def env_name(action: argparse.Action) -> str:
    return ENV_PREFIX + _option_name(action).upper().replace("-", "_")


def _is_bool_action(action: argparse.Action) -> bool:
    return isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction))


def _value_for(action: argparse.Action, value, source: str):
    """``value`` (from a TOML file: typed; from the environment: a string) as the option's value, or
    ConfigError naming the option and the source."""
    name = _option_name(action)
    flag = f"--{name}" if action.option_strings else name

    def fail(why: str):
        raise ConfigError(f"Invalid value for '{flag}' from {source}: {why}")

    from_env = isinstance(value, str) and source.startswith((ENV_PREFIX, "UVICORN_", "WEB_CONCURRENCY",
                                                             "FORWARDED_ALLOW_IPS"))
    if _is_bool_action(action):
        if from_env:
            text = value.strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            fail(f"{value!r} is not true or false (1/0, true/false, yes/no, on/off)")
        if not isinstance(value, bool):
            fail(f"{value!r} must be true or false")
        return value
    if isinstance(action, argparse._AppendAction):
        if from_env:
            if action.dest in NO_SPLIT:
                items = [value] if value.strip() else []
            else:
                items = [v.strip() for v in value.split(",") if v.strip()]
        else:
            items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            fail(f"{value!r} must be a list of strings")
        return list(items)
    convert = action.type
    if convert is not None:
        if from_env:
            try:
                value = convert(value)
            except argparse.ArgumentTypeError as exc:
                fail(str(exc))
        elif convert is _positive_int:
            if isinstance(value, bool) or not isinstance(value, int):
                fail(f"{value!r} is not a whole number")
        elif convert is _seconds:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(f"{value!r} is not a number of seconds")
            value = float(value)
    elif action.dest in COMMA_LISTS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value)  # a TOML list of addresses, as the flag's comma-separated text
    elif not isinstance(value, str):
        fail(f"{value!r} must be a string")
    if action.choices is not None and value not in action.choices:
        fail(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def _lookup(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Accepted names in a file: the flag's name with dashes or underscores, and the ServerConfig field."""
    names = {}
    for action in configurable_actions(parser):
        name = _option_name(action)
        for key in (name, name.replace("-", "_"), action.dest):
            names[key] = action
    return names


def values_from_file(parser: argparse.ArgumentParser, path: str) -> dict:
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"Invalid value for '--config': cannot read {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Invalid value for '--config': {path!r} is not valid TOML: {exc}") from None
    names = _lookup(parser)
    values = {}
    for key, value in data.items():
        action = names.get(key)
        if action is None:
            raise ConfigError(f"Unknown option {key!r} in {path} (see 'hybrid --help' for the options)")
        values[action.dest] = _value_for(action, value, path)
    return values


def values_from_uvicorn_env(parser: argparse.ArgumentParser, environ) -> dict:
    """uvicorn's environment, so a deployment's variables keep working: UVICORN_<FLAG> (UVICORN_PORT),
    WEB_CONCURRENCY (--workers) and FORWARDED_ALLOW_IPS; HYBRID_* variables win over them."""
    names = {"WEB_CONCURRENCY": "workers", "FORWARDED_ALLOW_IPS": "forwarded_allow_ips"}
    for action in configurable_actions(parser):
        names["UVICORN_" + env_name(action)[len(ENV_PREFIX):]] = action.dest
    actions = {action.dest: action for action in configurable_actions(parser)}
    return {dest: _value_for(actions[dest], environ[name], name) for name, dest in names.items() if name in environ}


def values_from_env(parser: argparse.ArgumentParser, environ) -> dict:
    """HYBRID_<FLAG> variables (HYBRID_PORT, HYBRID_ASYNC_PATH with commas between globs). Other HYBRID_*
    names are not options and are left alone."""
    values = {}
    for action in configurable_actions(parser):
        name = env_name(action)
        if name in environ:
            values[action.dest] = _value_for(action, environ[name], name)
    return values


def config_from_args(argv: list[str] | None = None, environ=None) -> ServerConfig:
    """The ServerConfig of a command line, over HYBRID_* variables (``environ``), over the --config file."""
    parser = build_parser()
    environ = os.environ if environ is None else environ
    from hybrid.uvicorn_compat import bool_values_as_flags

    argv = bool_values_as_flags(sys.argv[1:] if argv is None else list(argv))
    first = _Parser(add_help=False)
    first.add_argument("--config", default=None)
    known, _ = first.parse_known_args(argv)
    path = known.config or environ.get(ENV_PREFIX + "CONFIG") or None
    try:
        layered = values_from_file(parser, path) if path else {}
        layered.update(values_from_uvicorn_env(parser, environ))
        layered.update(values_from_env(parser, environ))
    except ConfigError as exc:
        parser.error(str(exc))
    lists = {a.dest for a in parser._actions if isinstance(a, argparse._AppendAction)}
    parser.set_defaults(**{k: v for k, v in layered.items() if k not in lists})
    args = parser.parse_args(argv)
    try:
        options = vars(args)
        options.pop("config", None)
        for key in lists:
            # A list on the command line replaces the one from the environment or the file (never merged).
            options[key] = tuple(options[key] or layered.get(key, ()))
        config = ServerConfig(**options)
        if config.log_config is not None:
            from hybrid.logs import LogConfigError, load_log_config

            try:
                load_log_config(config.log_config)
            except LogConfigError as exc:
                raise ConfigError(f"Invalid value for '--log-config': {exc}") from None
        return config
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def main(argv: list[str] | None = None) -> None:
    config = config_from_args(argv)
    from hybrid.server import serve

    sys.exit(serve(config))
