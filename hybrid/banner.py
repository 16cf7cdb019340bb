"""The server's words about itself: the "Listening on" line, counts in words, and --log-level debug's first line."""

from __future__ import annotations

import os

from hybrid.config import ServerConfig


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def compiled_extensions() -> tuple[bool, list[str]]:
    """Whether every module of hybrid._speedups is a compiled extension (not a pure-Python stand-in).

    Each is found, not imported: importing would run the HTTP/2 modules' ``import h2`` at every start, and with
    --app-dir an app's own ``h2.py`` (or any module named like a library hybrid uses) would shadow it and stop a
    server that never speaks HTTP/2."""
    import importlib.machinery
    import importlib.util

    names = ("accesslog", "connection", "cycle", "h1", "h1_events", "h1_response", "h2fields", "h2machine", "h2read",
             "h2scope", "h2write", "held", "hpack_codec", "loopcall", "monitor", "outbox", "steps", "stream_connection",
             "streams", "task", "tls_io", "wsframe", "wsmask")  # (setup.py's MODULES: tests/test_build.py checks it)
    compiled = []
    for name in names:
        spec = importlib.util.find_spec(f"hybrid._speedups.{name}")
        if spec is not None and (spec.origin or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            compiled.append(name)
    return len(compiled) == len(names), compiled


DEMO_APP = "hybrid.demo:app"


def app_name(app) -> str:
    """The app as the banner names it: its MODULE:ATTRIBUTE, or the object's module and name (hybrid.run)."""
    if isinstance(app, str):
        return app
    name = getattr(app, "__qualname__", None) or type(app).__qualname__
    return f"{getattr(app, '__module__', None) or '?'}:{name}"


def startup_banner(config: ServerConfig, address: str, app=None) -> str:
    """'Listening on ADDRESS (APP; 1 worker, 1 thread, loop uvloop, compiled extensions; press CTRL+C to quit)';
    APP is 'the built-in demo, as no APP was given' when none was."""
    from hybrid import loops

    loop = "uvloop" if loops.uvloop is not None else "asyncio"
    every, compiled = compiled_extensions()
    extensions = "compiled extensions" if every else f"compiled extensions: only {', '.join(compiled) or 'none'}"
    threads = plural(config.threads, "thread") + (" each" if config.workers > 1 else "")
    if config.mode == "async":
        threads = "async mode: one event loop" + (" each" if config.workers > 1 else "")
    app = config.app if app is None else app
    what = "the built-in demo, as no APP was given" if app == DEMO_APP else app_name(app)
    return (f"Listening on {address} ({what}; {plural(config.workers, 'worker')}, {threads}, loop {loop}, "
            f"{extensions}; press CTRL+C to quit)")


def debug_line(config: ServerConfig) -> str:
    """hybrid's and Python's versions, the process and the options not at their defaults (--log-level debug)."""
    import platform

    from hybrid import __version__
    from hybrid.config import changed_options

    return (f"hybrid {__version__} on {platform.python_implementation()} {platform.python_version()}, process "
            f"[{os.getpid()}]; options not at their defaults: {changed_options(config)}")

