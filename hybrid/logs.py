"""Logging: handlers and formatters of the ``hybrid`` loggers, and the access log line.

Loggers: ``hybrid.error`` (server events) and ``hybrid.access`` (one record per request), both under ``hybrid``.
``setup_logging`` is called once per process (the server, the supervisor and each worker process) and lives here,
apart from cli.py, server.py and supervisor.py, so none of them imports another for it.

The access record carries its fields as a mapping (``record.args``): the message is the uvicorn line
``127.0.0.1:PORT - "GET /path HTTP/1.1" 200``, and ``JsonAccessFormatter`` writes the same record as one JSON
object per line (``--access-log-format json``). A ``--log-config`` file can use either formatter by name
(``hybrid.logs.DefaultFormatter``, ``hybrid.logs.JsonAccessFormatter``). The caller checks
``Server.access_log`` (the flag and ``access_logger.isEnabledFor(INFO)``) before building anything, so a
disabled access log costs one attribute test per request. While the handlers setup_logging installed are the only
ones, an enabled access line skips the logging module: the same text is made directly (``_FastPath``), kept in
memory and written to their stream in batches, within FLUSH_DELAY (``_Pending``; ``flush_access_log`` at
shutdown); anything else (a --log-config, a handler or filter an app adds) gets a real LogRecord, as before.
Connection calls hybrid/_speedups/accesslog.pyx for each request, which makes the fast path's line in C (same
rule, same bytes) and calls ``log_http_access`` for everything else.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import threading
import time
from http import HTTPStatus
from time import perf_counter, time_ns

from hybrid._speedups import accesslog as _accesslog
from hybrid.log_config import LogConfigError, apply_log_config, asks_uvicorn_fields, load_log_config  # noqa: F401

TRACE = 5

logging.addLevelName(TRACE, "TRACE")
logger = logging.getLogger("hybrid.error")
access_logger = logging.getLogger("hybrid.access")

ACCESS_TEXT = '%(client)s - "%(method)s %(path)s HTTP/%(http_version)s" %(status)d'

_COLOURS = {
    "TRACE": "\033[34m", "DEBUG": "\033[36m", "INFO": "\033[32m", "WARNING": "\033[33m", "ERROR": "\033[31m",
    "CRITICAL": "\033[91m",
}
_RESET = "\033[0m"


class AccessRecord(logging.LogRecord):
    """The access log's LogRecord, made without the per-call work of ``Logger.info`` that an access line does not
    use: no stack walk for the caller's file and line, no path splitting (about a third of a log call's cost).
    Every attribute a formatter may name is set; ``pathname``, ``lineno`` and ``funcName`` say nothing."""

    def __init__(self, msg: str, args: dict) -> None:  # noqa: D107 - (deliberately not calling super)
        now = time.time()
        self.name = "hybrid.access"
        self.msg = msg
        self.args = args
        self.levelname = "INFO"
        self.levelno = logging.INFO
        self.pathname = __file__
        self.filename = "logs.py"
        self.module = "logs"
        self.exc_info = None
        self.exc_text = None
        self.stack_info = None
        self.lineno = 0
        self.funcName = None
        self.created = now
        self.msecs = int((now - int(now)) * 1000) + 0.0
        self.relativeCreated = (now - logging._startTime) * 1000
        self.thread = threading.get_ident()
        self.threadName = threading.current_thread().name
        self.processName = _process_name()
        self.process = os.getpid()
        self.taskName = None


def _process_name() -> str:
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return "MainProcess"
    try:
        return mp.current_process().name
    except Exception:  # noqa: BLE001 - as logging does
        return "MainProcess"


class DefaultFormatter(logging.Formatter):
    """``INFO:     message``, aligned as uvicorn aligns it; the level name is coloured when ``use_colors``."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%",
                 use_colors: bool | None = None) -> None:
        super().__init__(fmt or "%(levelprefix)s %(message)s", datefmt, style)
        self.use_colors = sys.stderr.isatty() if use_colors is None else use_colors

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        name = record.levelname
        pad = " " * max(0, 8 - len(name))
        record.levelprefix = f"{_COLOURS.get(name, '')}{name}{_RESET}:{pad}" if self.use_colors else f"{name}:{pad}"
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """uvicorn's access formatter (``uvicorn.logging.AccessFormatter`` in a uvicorn log config is this one): an
    access record's ``client_addr``, ``request_line`` and ``status_code`` ("200 OK") for the format, as uvicorn
    names them; ``use_colors`` makes the request line bold and the status coloured by class."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%",
                 use_colors: bool | None = None) -> None:
        super().__init__(fmt or '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', datefmt,
                         style, use_colors)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        fields = record.args
        if isinstance(fields, dict) and "status" in fields:
            record = logging.makeLogRecord(record.__dict__)  # (a copy: other handlers see the record unchanged)
            uvicorn_fields(record.__dict__, fields, self.use_colors)
        return super().formatMessage(record)


_STATUS_COLOURS = {1: "\033[97m", 2: "\033[32m", 3: "\033[33m", 4: "\033[31m", 5: "\033[91m"}


def uvicorn_fields(into: dict, fields: dict, colours: bool = False) -> None:
    """uvicorn's names for an access record's fields, put into ``into`` (a record's __dict__)."""
    status = fields["status"]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    status_code = f"{status} {phrase}" if phrase else str(status)
    if fields["method"] == "WebSocket":
        request_line = f"WebSocket {fields['path']}"
    else:
        request_line = f"{fields['method']} {fields['path']} HTTP/{fields['http_version']}"
    if colours:
        request_line = f"\033[1m{request_line}{_RESET}"
        status_code = f"{_STATUS_COLOURS.get(status // 100, '')}{status_code}{_RESET}"
    into["client_addr"] = fields["client"]
    into["request_line"] = request_line
    into["status_code"] = status_code


class JsonAccessFormatter(logging.Formatter):
    """One JSON object per access record: time, method, path, query, status, bytes, duration_ms, client,
    request_id, where ("worker", "pool"), http_version. Other records: time, level, message."""

    _second = -1
    _second_text = ""

    def timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # (one strftime a second, not one a line)
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.timestamp(record.created)
        fields = record.args
        if isinstance(fields, dict) and "status" in fields:
            return _dumps({"time": stamp, **fields})
        out = {"time": stamp, "level": record.levelname.lower(), "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _dumps(out)


_dumps = json.JSONEncoder(separators=(",", ":")).encode
_esc = json.encoder.encode_basestring_ascii
_MILLIS = [f"{ms:03d}" for ms in range(1000)]
_QUOTED = {text: f'"{text}"' for text in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "1.1", "1.0")}


def level_number(level: str) -> int:
    return TRACE if level == "trace" else getattr(logging, level.upper())


def setup_logging(level: str = "info", *, log_config: str | dict | None = None, access_log_format: str = "text",
                  use_colors: bool | None = None) -> None:
    """Configure the ``hybrid`` loggers for this process. With ``log_config`` the file decides handlers,
    formatters and levels (``level`` and ``access_log_format`` are not applied). Raises LogConfigError."""
    global _uvicorn_fields
    flush_access_log()  # (lines of an earlier setup go where they were meant to)
    _set_fast(None)
    _uvicorn_fields = False
    if log_config is not None:
        for name in ("hybrid", "hybrid.error", "hybrid.access"):  # (what an earlier setup installed goes)
            log = logging.getLogger(name)
            log.handlers[:] = []
            log.propagate = True
        apply_log_config(log_config)
        _uvicorn_fields = asks_uvicorn_fields((access_logger, _hybrid_logger, logging.getLogger()))
        return
    colours = sys.stderr.isatty() and os.environ.get("NO_COLOR") is None if use_colors is None else use_colors
    handler = _Handler(sys.stderr)
    handler.setFormatter(DefaultFormatter(use_colors=colours))
    for name in ("hybrid", "hybrid.error", "hybrid.access"):
        log = logging.getLogger(name)
        log.handlers[:] = []
        log.propagate = False
    root = logging.getLogger("hybrid")
    root.addHandler(handler)
    root.setLevel(level_number(level))
    logging.getLogger("hybrid.error").propagate = True
    if access_log_format == "json":
        # The server's own lines are JSON too ({"time", "level", "message"}): one stream, one format.
        handler.setFormatter(JsonAccessFormatter())
        # The access lines' own handler: JSON lines carry no level prefix, and nothing else is written into them.
        json_handler = _Handler(sys.stderr)
        json_handler.setFormatter(JsonAccessFormatter())
        access_logger.addHandler(json_handler)
        fast = _FastPath(json_handler, True, colours)
    else:
        access_logger.propagate = True
        fast = _FastPath(handler, False, colours)
    _pending.handler = fast.handler
    _pending.limit = FLUSH_BYTES // TYPICAL_LINE[fast.json]
    _set_fast(fast)


def _set_fast(fast: _FastPath | None) -> None:
    """The fast path, here and in the compiled access line (accesslog.pyx), which reads the same conditions."""
    global _fast
    _fast = fast
    _accesslog.configure(fast, _pending, access_logger, _hybrid_logger, log_http_access)


# -- the fast path: access lines made directly, kept in memory, written in batches ---------------------------
#
# A line waits at most FLUSH_DELAY: the first line into an empty buffer wakes the flusher thread, which sleeps
# FLUSH_DELAY and then writes everything buffered by then (one thread, only awake while lines wait: an idle server
# has no timer ticking). A serving thread that takes the buffer past about FLUSH_BYTES writes it itself, at once:
# memory stays bounded, and a stream that cannot keep up slows the servers down as a direct write would (no
# unbounded backlog behind a thread of its own). Every record the handlers below write (server events, and access
# records while the fast path is off) is preceded by the pending lines: the stream keeps the order of events.
# Flushed at shutdown: Server.shutdown, the worker process's exit (spawned workers leave by os._exit, with no
# atexit), and logging.shutdown (atexit, an uncaught exception included) through the handlers' flush().

FLUSH_DELAY = 0.05  # seconds the first unwritten line may wait
FLUSH_BYTES = 64 * 1024  # about this much is written by the thread that fills the buffer (counted in lines:
TYPICAL_LINE = {False: 80, True: 256}  # a text line is about 80 bytes long, a JSON line 256)
ATOMIC_WRITE = 4096  # PIPE_BUF: writes of at most this many bytes to a pipe never interleave with other processes'


class _Pending:
    """The access lines not yet written, in the order they were made, and the thread that writes them late.

    Adding a line takes no lock: ``list.append`` is one step under the GIL, the list is never replaced, and the only
    other change to it, taking the first n lines out (``lines[:n]``, ``del lines[:n]``), happens under ``io`` in one
    thread at a time and leaves the lines appended meanwhile in place. ``told`` says the flusher has been woken
    for the lines in the list: a thread reads it after appending, and the flusher clears it before taking the
    lines; so a line either finds it set (and the take that follows the clearing has it) or wakes the flusher."""

    def __init__(self) -> None:
        self.handler: logging.StreamHandler | None = None  # its stream is where lines go
        self.limit = FLUSH_BYTES // TYPICAL_LINE[False]
        self._reset()

    def _reset(self) -> None:  # (also in a forked child: the parent writes its own lines, and no thread came along)
        self.io = threading.RLock()  # held from taking lines until they are written: batches keep their order
        # The same list for the life of the process (accesslog.pyx holds it): a forked child empties it.
        if hasattr(self, "lines"):
            self.lines.clear()
        else:
            self.lines: list[str] = []
        self.told = False
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.stream_kind = (None, False)  # (stream, a regular file?)

    def add(self, line: str) -> None:  # (hybrid/_speedups/accesslog.pyx does the same in C)
        lines = self.lines
        lines.append(line)
        if not self.told:
            self.tell()
        elif len(lines) >= self.limit:
            self.flush()

    def tell(self) -> None:
        """The first line since the flusher last took them: it is written within FLUSH_DELAY."""
        self.told = True
        if self.thread is None:
            self._start()
        self.wake.set()

    def _start(self) -> None:
        with self.io:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="hybrid-access-log", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        wake = self.wake
        while True:
            wake.wait()
            wake.clear()
            time.sleep(FLUSH_DELAY)
            self.flush(tell=True)

    def flush(self, timeout: float = -1, tell: bool = False) -> bool:
        """Write every pending line; False if the lock was not had within ``timeout`` seconds."""
        if not self.io.acquire(timeout=timeout):
            return False
        try:
            if tell:
                self.told = False  # (before the take: a line added after it wakes the flusher again)
            lines = self.lines
            n = len(lines)
            if n and self.handler is not None:
                taken = lines[:n]
                del lines[:n]
                self._write(self.handler.stream, taken)
            return True
        finally:
            self.io.release()

    def _write(self, stream, lines: list[str]) -> None:
        try:
            if self.stream_kind[0] is not stream:
                self.stream_kind = (stream, _regular_file(stream))
            text = "".join(lines)
            # A file takes one write whole, however many processes append to it. A pipe, socket or terminal may be
            # shared by several worker processes: writes up to PIPE_BUF are atomic there, longer ones can interleave
            # with another process's, so a batch goes in pieces of whole lines no longer than that (a longer line
            # alone, as logging would write it). (Counted in characters: 4 bytes at most each when not ASCII.)
            limit = len(text) if self.stream_kind[1] else ATOMIC_WRITE if text.isascii() else ATOMIC_WRITE // 4
            start = 0
            while len(text) - start > limit:
                end = text.rfind("\n", start, start + limit) + 1 or text.find("\n", start + limit) + 1 or len(text)
                stream.write(text[start:end])
                stream.flush()
                start = end
            stream.write(text[start:] if start else text)
            stream.flush()
        except Exception:  # noqa: BLE001 - as logging.Handler.handleError would: never fail a request
            pass


def _regular_file(stream) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False  # (no file descriptor: small writes are safe everywhere)


_pending = _Pending()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pending._reset)


def flush_access_log(timeout: float = -1) -> bool:
    """Write the access lines still in memory now (shutdown, a worker process exiting). With a ``timeout`` (in
    seconds, for a signal handler that may have interrupted a thread holding the locks), give up after it."""
    return _pending.flush(timeout)


class _Handler(logging.StreamHandler):
    """The handler setup_logging installs: the pending access lines go before each record it writes, and
    ``flush()`` (logging.shutdown calls it at exit) writes them too."""

    def emit(self, record: logging.LogRecord) -> None:
        pending = _pending
        with pending.io:
            if pending.lines:
                pending.flush()
            super().emit(record)

    def flush(self) -> None:
        if _pending.lines:
            _pending.flush()
        super().flush()


class _FastPath:
    """The default handlers, as setup_logging installed them: while they are still the only ones, an access line
    is made directly, as the same text their formatter would make, without a LogRecord or the handler chain, and
    buffered (``_Pending``). Anything added or changed (a handler, a filter, propagation, a dictConfig) switches
    back to the logging module at the next request."""

    __slots__ = ("handler", "json", "access_handlers", "parent_handlers", "propagate", "prefix", "stamp", "clients")

    def __init__(self, handler: logging.Handler, json: bool, colours: bool) -> None:
        self.handler = handler
        self.json = json
        self.access_handlers = list(access_logger.handlers)
        self.parent_handlers = list(_hybrid_logger.handlers)
        self.propagate = access_logger.propagate
        self.prefix = f"{_COLOURS['INFO']}INFO{_RESET}:     " if colours else "INFO:     "
        self.stamp = (-1, "")  # (second, '{"time":"' and its text): the JSON time is formatted once a second
        self.clients: dict = {}  # (log_http_access checks, each request, that nothing above changed)


_fast: _FastPath | None = None
_uvicorn_fields = False  # a handler's format names uvicorn's access fields (log_config.asks_uvicorn_fields)
_hybrid_logger = logging.getLogger("hybrid")


def setup_logging_for(config) -> None:
    """``setup_logging`` with a ServerConfig's options."""
    setup_logging(config.log_level, log_config=config.log_config, access_log_format=config.access_log_format,
                  use_colors=config.use_colors)


def log_http_access(conn, cycle, where: str) -> None:
    """One access record for a completed HTTP request (the caller checked the access log is enabled)."""
    scope = cycle.scope
    path = scope["raw_path"].decode("latin-1")
    query = scope["query_string"]
    if query:
        path += "?" + query.decode("latin-1")
    fast = _fast
    # (the default handlers, and nothing else: the conditions _FastPath saved)
    if fast is not None and access_logger.handlers == fast.access_handlers \
            and _hybrid_logger.handlers == fast.parent_handlers and access_logger.propagate == fast.propagate \
            and not (access_logger.filters or _hybrid_logger.filters or fast.handler.filters
                     or access_logger.disabled or _hybrid_logger.disabled):
        client = scope["client"]  # (a trusted proxy's client, with --proxy-headers)
        clients = fast.clients  # client -> its text (JSON: quoted), made once a connection
        text = clients.get(client) if type(client) is tuple else None  # (an app may have put a list there)
        if text is None:
            text = f"{client[0]}:{client[1]}" if client else "-"
            if fast.json:
                text = _esc(text)
            if type(client) is tuple:
                if len(clients) >= 4096:
                    clients.clear()
                clients[client] = text
        if not fast.json:  # (the text line has no request id: a lazy one stays unmade)
            _pending.add(f'{fast.prefix}{text} - "{scope["method"]} {path} HTTP/{scope["http_version"]}" '
                         f'{cycle.status}\n')
            return
        # The same object JsonAccessFormatter makes, written out directly (json's C string escaper for the strings)
        ns = time_ns()
        second = ns // 1_000_000_000
        stamp = fast.stamp
        if stamp[0] != second:
            stamp = fast.stamp = (second, time.strftime('{"time":"%Y-%m-%dT%H:%M:%S.', time.gmtime(second)))
        # repr(round(ms, 3)), as the formatter writes it, in a third of the time (the same digits: both round the
        # exact binary value correctly; durations are far from where repr would switch to an exponent)
        duration = f"{(perf_counter() - cycle.started) * 1000:.3f}".rstrip("0")
        method = scope["method"]
        version = scope["http_version"]
        _pending.add(f'{stamp[1]}{_MILLIS[ns // 1_000_000 % 1000]}Z","method":{_QUOTED.get(method) or _esc(method)},'
                     f'"path":{_esc(path)},"status":{cycle.status},"bytes":{cycle.sent},'
                     f'"duration_ms":{duration}{"0" if duration[-1] == "." else ""},"client":{text},'
                     f'"request_id":{_esc(scope["extensions"]["hybrid.request_id"]["id"])},"where":"{where}",'
                     f'"http_version":{_QUOTED.get(version) or _esc(version)}}}\n')
        return
    client = scope["client"]
    client = f"{client[0]}:{client[1]}" if client else "-"
    fields = {
        "method": scope["method"],
        "path": path,
        "status": cycle.status,
        "bytes": cycle.sent,
        "duration_ms": round((perf_counter() - cycle.started) * 1000, 3),
        "client": client,
        "request_id": scope["extensions"]["hybrid.request_id"]["id"],
        "where": where,
        "http_version": scope["http_version"],
    }
    record = AccessRecord(ACCESS_TEXT, fields)
    if _uvicorn_fields:  # (only built when a configured format asks for them)
        uvicorn_fields(record.__dict__, fields)
    access_logger.handle(record)


def log_websocket_access(session) -> None:
    """The access record of a WebSocket session: its handshake's outcome (101, or the refusal's status)."""
    scope = session.scope
    client = scope["client"]
    path = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("latin-1")
    fields = {
        "method": "WebSocket",
        "path": path,
        "status": session.status,
        "bytes": 0,
        "duration_ms": None,
        "client": f"{client[0]}:{client[1]}" if client else "-",
        "request_id": scope["extensions"]["hybrid.request_id"]["id"],
        "where": "pool",
        "http_version": scope["http_version"],
    }
    extra = None
    if _uvicorn_fields:
        extra = {}
        uvicorn_fields(extra, fields)
    access_logger.info('%(client)s - "WebSocket %(path)s" %(status)d', fields, extra=extra)
