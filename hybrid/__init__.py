"""hybrid: a Cython-accelerated ASGI server (inline SyncWorker threads; an async pool for streams)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

try:
    from hybrid._speedups import h1 as _h1  # noqa: F401
    from hybrid._speedups import monitor as _monitor  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "hybrid's compiled modules are missing: build them with 'pip install -e .' (or 'make run') "
        f"in the source tree ({exc})."
    ) from None


def run(app: Any, **options: Any) -> None:
    """Serve ``app`` (an ASGI callable or 'MODULE:ATTRIBUTE') with the given ServerConfig options."""
    import sys

    from hybrid.config import ServerConfig
    from hybrid.server import serve

    # An app object goes into the config as itself: worker processes cannot import an object, so the config
    # refuses it with --workers/--reload (a 'MODULE:ATTRIBUTE' string works everywhere).
    # lifecycle_collector: an object with event(event) (hybrid/lifecycle.py), given every lifecycle event.
    collector = options.pop("lifecycle_collector", None)
    from hybrid.uvicorn_compat import run_options

    config = ServerConfig(app=app, **run_options(options))  # (uvicorn.run's keywords too: docs/uvicorn.md)
    if collector is not None and config.use_supervisor:
        from hybrid.config import ConfigError

        raise ConfigError("Invalid value for 'lifecycle_collector': worker processes (workers, reload, "
                          "limit_max_requests) cannot share a collector object; use one process")
    code = serve(config, None if isinstance(app, str) else app, lifecycle_collector=collector)
    if code:
        sys.exit(code)


__all__ = ["run", "__version__"]
