"""ServerConfig: every option of one server, frozen and validated once.

The CLI (cli.py) maps its flags 1:1 onto these fields and ``hybrid.run(app, **options)`` takes the same names.
Names follow uvicorn's for the same concept, so switching servers means changing the command, not the flags.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from hybrid.proxy_headers import parse_allow_ips

LIFESPAN_MODES = ("auto", "on", "off")
WS_PROTOCOLS = ("wsproto", "none", "auto", "websockets", "websockets-sansio")  # (all but none: wsproto)
LOOPS = ("auto", "uvloop", "asyncio", "none", "zuvloop")
# --http: "auto" serves HTTP/1.1 and HTTP/2 (ALPN h2 over TLS, h2c prior knowledge on the plain port); "1.1" and
# uvicorn's parser names (httptools, h11, zttp) serve HTTP/1.1 only, as uvicorn does, unless --http2 is given.
HTTP_PROTOCOLS = ("auto", "1.1", "httptools", "h11", "zttp")
INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")
MODES = ("hybrid", "async")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
ACCESS_LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """An option has a value the server cannot use; the message names the option and says why."""


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def gil_enabled() -> bool:
    """Whether the GIL is on while hybrid serves. A free-threaded build turns it back on when it imports an
    extension that does not declare free-threading support (hybrid's do not, yet), unless ``PYTHON_GIL=0`` keeps it
    off: so the answer is only known once one of them is imported."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_enabled is None:
        return True
    try:
        import hybrid._speedups.wsmask  # noqa: F401 (the smallest of them)
    except ImportError:  # (not built: the server fails later, saying so)
        pass
    return is_enabled()


# Without the GIL only one thread may run hybrid's compiled code: per-thread state there is not audited yet.
NO_GIL_THREADS = ("more than one thread needs the GIL: hybrid's compiled extensions are not yet safe without it "
                  "(this interpreter runs with PYTHON_GIL=0); use --workers for more cores")


def default_threads(workers: int) -> int:
    """Serving threads per process when --threads is not given: one.

    With the GIL, one serving thread per process is fastest: a second one only takes turns with the first (measured:
    2 threads on 2 cores serve half the requests of 1, p99 3x) and blocked handlers are covered by spares anyway;
    use --workers for more cores. Without the GIL (a free-threaded build run with PYTHON_GIL=0) one per core would
    be the aim, but the compiled extensions do not declare free-threading support yet, so one (NO_GIL_THREADS).
    """
    return 1


@dataclass(frozen=True)
class ServerConfig:
    app: Any = "hybrid.demo:app"
    factory: bool = False
    app_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    uds: str | None = None
    fd: int | None = None
    backlog: int = 2048
    threads: int | None = None
    max_threads: int | None = None
    blocking_threshold: float = 0.001
    blocking_stacks: bool = True
    gc_threshold: int = 10000  # (hybrid/gc_policy.py: above what 64 requests in flight hold, not 3.13's 2000)
    lifespan: str = "auto"
    root_path: str = ""
    timeout_keep_alive: float = 5.0
    timeout_request_head: float = 20.0
    timeout_request_body: float = 30.0
    timeout_write_stall: float = 60.0
    timeout_graceful_shutdown: float | None = None
    timeout_startup: float = 60.0  # (lifecycle: lifespan startup bound)
    workers: int = 1
    reload: bool = False
    reload_dirs: tuple[str, ...] = ()
    reload_includes: tuple[str, ...] = ()
    reload_excludes: tuple[str, ...] = ()
    limit_max_requests: int | None = None
    timeout_worker_healthcheck: float = 5.0
    limit_request_body: int | None = None
    limit_concurrency: int | None = None
    limit_connections: int | None = None
    max_incomplete_event_size: int = 16384
    async_paths: tuple[str, ...] = ()
    mode: str = "hybrid"
    ws: str = "wsproto"
    ws_max_size: int = 16 * 1024 * 1024
    ws_ping_interval: float | None = 20.0
    ws_ping_timeout: float | None = 20.0
    ws_per_message_deflate: bool = True
    ws_open_timeout: float = 10.0
    ws_close_timeout: float = 5.0
    proxy_headers: bool = True
    proxy_forwarded: bool = False
    proxy_forwarded_host: bool = False
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password: str | None = None
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: int = 0  # ssl.CERT_NONE; 1 CERT_OPTIONAL, 2 CERT_REQUIRED (uvicorn's numbers)
    ssl_ciphers: str | None = None  # None: Python's defaults (forward secret AEAD suites, TLS 1.2 at least)
    timeout_tls_handshake: float = 10.0
    log_level: str = "info"
    log_config: str | dict | None = None  # (a dict only from hybrid.run, as uvicorn.run takes it)
    access_log: bool = True
    access_log_format: str = "text"
    use_colors: bool | None = None
    request_id_header: str | None = None
    metrics_port: int | None = None
    server_header: bool = True
    date_header: bool = True
    headers: tuple[str, ...] = ()  # uvicorn's --header NAME:VALUE, sent in every response
    # uvicorn's options (hybrid/uvicorn_compat.py): honoured, or accepted with one line saying what hybrid does
    interface: str = "auto"
    loop: str = "auto"
    http: str = "auto"
    env_file: str | None = None
    reload_delay: float | None = None  # None: 0.05 s
    ws_max_queue: int | None = None
    ssl_version: int | None = None
    timeout_notify: float | None = None
    limit_max_requests_jitter: int | None = None  # None: a tenth of --limit-max-requests
    reset_contextvars: bool = False
    uvicorn_http2: bool = False  # uvicorn's --http2: HTTP/2 beside any --http parser

    @property
    def http2(self) -> bool:
        """HTTP/2 is served (--http auto, or --http2): ALPN h2 over TLS, h2c with prior knowledge on the plain port."""
        return self.http == "auto" or self.uvicorn_http2

    def __post_init__(self) -> None:
        # Fill derived defaults once, so every reader sees concrete values.
        if isinstance(self.forwarded_allow_ips, (str, list)):
            # hybrid.run(..., forwarded_allow_ips="10.0.0.0/8,127.0.0.1") as uvicorn takes it, or a list.
            ips = self.forwarded_allow_ips
            parts = ips.split(",") if isinstance(ips, str) else ips
            object.__setattr__(self, "forwarded_allow_ips", tuple(p.strip() for p in parts if p.strip()))
        if isinstance(self.headers, list) or (isinstance(self.headers, tuple) and self.headers and not all(
                isinstance(h, str) for h in self.headers)):
            # hybrid.run(..., headers=[("X-A", "1")]) as uvicorn's Config takes them, or 'NAME:VALUE' strings
            object.__setattr__(self, "headers", tuple(h if isinstance(h, str) else f"{h[0]}:{h[1]}"
                                                      for h in self.headers))
        workers = self.workers if isinstance(self.workers, int) and self.workers > 0 else 1
        threads = self.threads if self.threads is not None else default_threads(workers)
        object.__setattr__(self, "threads", threads)
        if self.max_threads is None and isinstance(threads, int):
            # Room for 32 handlers blocked at once beyond the serving threads (anyio's pool allows 40); none
            # without the GIL, where spares would run compiled code beside the serving thread (NO_GIL_THREADS).
            object.__setattr__(self, "max_threads", threads + 32 if gil_enabled() else threads)
        self.validate()

    def validate(self) -> None:
        def fail(option: str, why: str) -> None:
            raise ConfigError(f"Invalid value for '--{option}': {why}")

        for option, value in (("port", self.port), ("backlog", self.backlog), ("threads", self.threads),
                              ("max-threads", self.max_threads), ("workers", self.workers), ("fd", self.fd),
                              ("limit-max-requests", self.limit_max_requests), ("ws-max-size", self.ws_max_size),
                              ("limit-request-body", self.limit_request_body)):
            if isinstance(value, bool):  # (a bool is an int to isinstance)
                fail(option, f"{value!r} is not a whole number")
        if not isinstance(self.app, str) and not callable(self.app):
            fail("app", "expected 'MODULE:ATTRIBUTE' or an ASGI callable")
        if isinstance(self.app, str) and not all(self.app.partition(":")[::2]):
            # (a malformed APP is a bad argument, exit 2 like any other; an app that fails to load exits 1)
            raise ConfigError(f"Invalid value for APP: {self.app!r} is not of the form 'MODULE:ATTRIBUTE' "
                              "(for example main:app)")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            fail("port", f"{self.port!r} is not a port number between 0 and 65535")
        if self.uds is not None and self.fd is not None:
            fail("uds", "'--uds' and '--fd' cannot be used together")
        if self.fd is not None and (not isinstance(self.fd, int) or self.fd < 0):
            fail("fd", f"{self.fd!r} is not a file descriptor number")
        if isinstance(self.gc_threshold, bool) or not isinstance(self.gc_threshold, int) or \
                not 0 <= self.gc_threshold <= 10_000_000:
            fail("gc-threshold", f"{self.gc_threshold!r} must be a whole number from 0 (the interpreter's own) "
                                 "to 10000000")
        if not isinstance(self.backlog, int) or self.backlog < 1:
            fail("backlog", f"{self.backlog!r} must be a positive whole number")
        if not isinstance(self.threads, int) or self.threads < 1:
            fail("threads", f"{self.threads!r} must be at least 1")
        if not isinstance(self.max_threads, int) or self.max_threads < self.threads:
            fail("max-threads", f"{self.max_threads!r} must be at least --threads ({self.threads})")
        if self.max_threads > 1 and not gil_enabled():
            fail("threads" if self.threads > 1 else "max-threads", f"{self.max_threads}: {NO_GIL_THREADS}")
        if not isinstance(self.blocking_threshold, (int, float)) or not 0 < self.blocking_threshold <= 60:
            fail("blocking-threshold", f"{self.blocking_threshold!r} must be seconds, above 0 and at most 60")
        if self.lifespan not in LIFESPAN_MODES:
            fail("lifespan", f"{self.lifespan!r} is not one of {', '.join(LIFESPAN_MODES)}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            fail("root-path", f"{self.root_path!r} must start with '/' and not end with '/'")
        if not isinstance(self.timeout_keep_alive, (int, float)) or self.timeout_keep_alive <= 0:
            fail("timeout-keep-alive", f"{self.timeout_keep_alive!r} must be a positive number of seconds")
        if not isinstance(self.timeout_request_head, (int, float)) or self.timeout_request_head <= 0:
            fail("timeout-request-head", f"{self.timeout_request_head!r} must be a positive number of seconds")
        if not isinstance(self.timeout_request_body, (int, float)) or self.timeout_request_body <= 0:
            fail("timeout-request-body", f"{self.timeout_request_body!r} must be a positive number of seconds")
        if not isinstance(self.timeout_write_stall, (int, float)) or self.timeout_write_stall <= 0:
            fail("timeout-write-stall", f"{self.timeout_write_stall!r} must be a positive number of seconds")
        if self.timeout_graceful_shutdown is not None and self.timeout_graceful_shutdown < 0:
            fail("timeout-graceful-shutdown", f"{self.timeout_graceful_shutdown!r} must not be negative")
        if not isinstance(self.timeout_startup, (int, float)) or self.timeout_startup <= 0:
            fail("timeout-startup", f"{self.timeout_startup!r} must be a positive number of seconds")
        if not isinstance(self.workers, int) or self.workers < 1:
            fail("workers", f"{self.workers!r} must be at least 1")
        if self.limit_max_requests is not None and (
            not isinstance(self.limit_max_requests, int) or self.limit_max_requests < 1
        ):
            fail("limit-max-requests", f"{self.limit_max_requests!r} must be at least 1")
        if not isinstance(self.timeout_worker_healthcheck, (int, float)) or self.timeout_worker_healthcheck <= 0:
            fail("timeout-worker-healthcheck", f"{self.timeout_worker_healthcheck!r} must be positive seconds")
        if self.limit_request_body is not None and (
            not isinstance(self.limit_request_body, int) or self.limit_request_body < 0
        ):
            fail("limit-request-body", f"{self.limit_request_body!r} must be a number of bytes, 0 or more")
        for option, value in (("limit-concurrency", self.limit_concurrency),
                              ("limit-connections", self.limit_connections)):
            if value is not None and (not isinstance(value, int) or value < 1):
                fail(option, f"{value!r} must be at least 1")
        if not isinstance(self.max_incomplete_event_size, int) or self.max_incomplete_event_size < 1024:
            fail("max-incomplete-event-size", f"{self.max_incomplete_event_size!r} must be a number of bytes, "
                 "at least 1024")
        if not isinstance(self.async_paths, tuple) or not all(
            isinstance(p, str) and p.startswith("/") for p in self.async_paths
        ):
            fail("async-path", f"{self.async_paths!r}: each pattern must be a path glob starting with '/'")
        if self.mode not in MODES:
            fail("mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        if self.ws not in WS_PROTOCOLS:
            fail("ws", f"{self.ws!r} is not one of {', '.join(WS_PROTOCOLS)}")
        if not isinstance(self.ws_max_size, int) or self.ws_max_size < 1:
            fail("ws-max-size", f"{self.ws_max_size!r} must be a number of bytes, at least 1")
        for option, value in (("ws-ping-interval", self.ws_ping_interval), ("ws-ping-timeout", self.ws_ping_timeout)):
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                fail(option, f"{value!r} must be seconds, 0 or more (0: off)")
        for option, value in (("ws-open-timeout", self.ws_open_timeout), ("ws-close-timeout", self.ws_close_timeout)):
            if not isinstance(value, (int, float)) or value <= 0:
                fail(option, f"{value!r} must be a positive number of seconds")
        if self.ssl_cert_reqs not in (0, 1, 2):
            fail("ssl-cert-reqs", f"{self.ssl_cert_reqs!r} is not 0 (none), 1 (optional) or 2 (required)")
        for option in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_ciphers"):
            if getattr(self, option) is not None and self.ssl_certfile is None:
                fail(option.replace("_", "-"), "needs '--ssl-certfile' (TLS is on only with a certificate)")
        if self.ssl_cert_reqs and self.ssl_ca_certs is None and self.ssl_certfile is not None:
            fail("ssl-cert-reqs", "verifying client certificates needs '--ssl-ca-certs' (the CAs to trust)")
        if not isinstance(self.timeout_tls_handshake, (int, float)) or self.timeout_tls_handshake <= 0:
            fail("timeout-tls-handshake", f"{self.timeout_tls_handshake!r} must be a positive number of seconds")
        if self.reload and self.workers > 1:
            fail("reload", "'--reload' runs one worker; it cannot be combined with '--workers'")
        if (self.reload_dirs or self.reload_includes or self.reload_excludes) and not self.reload:
            fail("reload-dir", "'--reload-dir', '--reload-include' and '--reload-exclude' need '--reload'")
        if self.use_supervisor and not isinstance(self.app, str):
            option = "reload" if self.reload else "workers" if self.workers > 1 else "limit-max-requests"
            fail(option, "worker processes import the app themselves: pass the app as 'MODULE:ATTRIBUTE' "
                         "(for example hybrid.run('main:app', workers=2)), not as an object")
        if not isinstance(self.forwarded_allow_ips, tuple) or not all(
            isinstance(e, str) for e in self.forwarded_allow_ips
        ):
            fail("forwarded-allow-ips", f"{self.forwarded_allow_ips!r} must be IP addresses or networks")
        try:
            parse_allow_ips(self.forwarded_allow_ips)
        except ValueError as exc:
            fail("forwarded-allow-ips", str(exc))
        if self.log_level not in LOG_LEVELS:
            fail("log-level", f"{self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.log_config is not None and not isinstance(self.log_config, dict) and (
                not isinstance(self.log_config, str) or not os.path.isfile(self.log_config)):
            fail("log-config", f"{self.log_config!r} is not a file (or, from hybrid.run, a dictConfig dict)")
        if self.access_log_format not in ACCESS_LOG_FORMATS:
            fail("access-log-format", f"{self.access_log_format!r} is not one of {', '.join(ACCESS_LOG_FORMATS)}")
        if self.request_id_header is not None:
            from hybrid.request_id import valid_header_name

            if not isinstance(self.request_id_header, str) or not valid_header_name(self.request_id_header):
                fail("request-id-header", f"{self.request_id_header!r} is not an HTTP header name")
        for option, value in (("access-log", self.access_log), ("reload", self.reload), ("factory", self.factory),
                              ("ws-per-message-deflate", self.ws_per_message_deflate),
                              ("server-header", self.server_header), ("date-header", self.date_header)):
            if not isinstance(value, bool):
                fail(option, f"{value!r} must be true or false")
        if self.metrics_port is not None:
            if isinstance(self.metrics_port, bool) or not isinstance(self.metrics_port, int) or not (
                    0 <= self.metrics_port <= 65535):
                fail("metrics-port", f"{self.metrics_port!r} is not a port number between 0 and 65535")
            if self.metrics_port and self.metrics_port == self.port and self.uds is None and self.fd is None:
                fail("metrics-port", f"{self.metrics_port} is also '--port': metrics need a port of their own")
            import importlib.util

            if importlib.util.find_spec("prometheus_client") is None:
                fail("metrics-port", "needs the prometheus-client package: pip install 'hybrid-asgi[metrics]'")
        if self.use_colors is not None and not isinstance(self.use_colors, bool):
            fail("use-colors", f"{self.use_colors!r} must be true or false")
        self._validate_uvicorn_options(fail)

    def _validate_uvicorn_options(self, fail) -> None:
        from hybrid.uvicorn_compat import parse_header

        if not isinstance(self.headers, tuple):
            fail("header", f"{self.headers!r} must be a list of 'NAME:VALUE'")
        for header in self.headers:
            try:
                parse_header(header)
            except ValueError as exc:
                fail("header", str(exc))
        for option, value, choices in (("interface", self.interface, INTERFACES), ("loop", self.loop, LOOPS),
                                       ("http", self.http, HTTP_PROTOCOLS)):
            if value not in choices:
                fail(option, f"{value!r} is not one of {', '.join(choices)}")
        if self.interface == "wsgi":
            fail("interface", "'wsgi' cannot be served: hybrid serves ASGI (wrap a WSGI app with a2wsgi)")
        if self.env_file is not None and (not isinstance(self.env_file, str) or not os.path.isfile(self.env_file)):
            fail("env-file", f"{self.env_file!r} is not a file")
        if self.reload_delay is not None and (not isinstance(self.reload_delay, (int, float)) or not
                                              0 <= self.reload_delay <= 60):
            fail("reload-delay", f"{self.reload_delay!r} must be seconds, 0 to 60")
        if self.ws_max_queue is not None and (isinstance(self.ws_max_queue, bool) or not isinstance(
                self.ws_max_queue, int) or self.ws_max_queue < 1):
            fail("ws-max-queue", f"{self.ws_max_queue!r} must be at least 1")
        if self.ssl_version is not None and (isinstance(self.ssl_version, bool) or not isinstance(
                self.ssl_version, int)):
            fail("ssl-version", f"{self.ssl_version!r} is not an ssl.PROTOCOL_* number")
        if self.timeout_notify is not None and (not isinstance(self.timeout_notify, (int, float)) or
                                                self.timeout_notify <= 0):
            fail("timeout-notify", f"{self.timeout_notify!r} must be a positive number of seconds")
        if self.limit_max_requests_jitter is not None and (isinstance(self.limit_max_requests_jitter, bool) or
                not isinstance(self.limit_max_requests_jitter, int) or self.limit_max_requests_jitter < 0):
            fail("limit-max-requests-jitter", f"{self.limit_max_requests_jitter!r} must be 0 or more")

    @property
    def use_supervisor(self) -> bool:
        """Worker processes under a supervisor: several workers, reload, or recycling after N requests."""
        return self.workers > 1 or self.reload or self.limit_max_requests is not None


    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    @property
    def bind_description(self) -> str:
        if self.uds is not None:
            return f"unix:{self.uds}"
        if self.fd is not None:
            return f"fd {self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


def changed_options(config: ServerConfig) -> str:
    """The options that differ from their defaults, as 'name=value' (--log-level debug logs it at startup)."""
    from dataclasses import fields

    out = []
    for f in fields(ServerConfig):
        value = getattr(config, f.name)
        if f.name != "app" and value != f.default and value not in ((), None):
            out.append(f"{f.name}={value!r}")
    return ", ".join(out) or "none"

