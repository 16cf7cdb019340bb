"""The sections of ``hybrid --help``, as uvicorn's settings documentation groups its options.

``Sections.add_argument`` puts each option into its section's argparse argument group (the parser itself keeps one
list of every action, so parsing, the environment and docgen see no difference); an option not listed here stays
under "options". The sections print in this order.
"""

from __future__ import annotations

import argparse

SECTIONS = {
    "Application": ("app", "--factory", "--app-dir", "--env-file", "--lifespan", "--interface", "--reset-contextvars"),
    "Socket binding": ("--host", "--port", "--uds", "--fd", "--backlog"),
    "Development": ("--reload", "--reload-dir", "--reload-include", "--reload-exclude", "--reload-delay"),
    "Production (processes and threads)": (
        "--workers", "--threads", "--max-threads", "--blocking-threshold", "--blocking-stacks", "--mode",
        "--async-path", "--timeout-worker-healthcheck", "--timeout-notify", "--metrics-port", "--gc-threshold"),
    "Logging": ("--log-level", "--log-config", "--access-log", "--access-log-format", "--use-colors",
                "--request-id-header"),
    "HTTP": ("--root-path", "--header", "--server-header", "--date-header", "--proxy-headers", "--proxy-forwarded",
             "--proxy-forwarded-host", "--forwarded-allow-ips", "--http", "--http2", "--loop",
             "--max-incomplete-event-size"),
    "WebSockets": ("--ws", "--ws-max-size", "--ws-max-queue", "--ws-ping-interval", "--ws-ping-timeout",
                   "--ws-per-message-deflate", "--ws-open-timeout", "--ws-close-timeout"),
    "HTTPS": ("--ssl-certfile", "--ssl-keyfile", "--ssl-keyfile-password", "--ssl-ca-certs", "--ssl-cert-reqs",
              "--ssl-ciphers", "--ssl-version", "--timeout-tls-handshake"),
    "Resource limits": ("--limit-concurrency", "--limit-connections", "--limit-request-body",
                        "--limit-max-requests", "--limit-max-requests-jitter"),
    "Timeouts": ("--timeout-keep-alive", "--timeout-request-head", "--timeout-request-body", "--timeout-write-stall",
                 "--timeout-graceful-shutdown", "--timeout-startup"),
}
_SECTION_OF = {name: title for title, names in SECTIONS.items() for name in names}


class Sections:
    """``add_argument`` into the option's --help section."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.groups = {title: parser.add_argument_group(title) for title in SECTIONS}

    def add_argument(self, *names: str, **options) -> argparse.Action:
        title = _SECTION_OF.get(names[0])
        return (self.groups[title] if title else self.parser).add_argument(*names, **options)
