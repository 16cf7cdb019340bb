"""Find the ASGI application named by 'MODULE:ATTRIBUTE'."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from typing import Any


class AppLoadError(Exception):
    """The application could not be imported or is not an ASGI 3 callable."""


def load_app(target: Any, *, factory: bool = False, app_dir: str | None = None, interface: str = "asgi3") -> Any:
    # The app's folder comes first on sys.path; by default the current folder, as `python -m` would do (the
    # `hybrid` console script otherwise only sees its own bin folder).
    folder = os.path.abspath(app_dir if app_dir is not None else ".")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if not isinstance(target, str):
        app = target
    else:
        module_name, _, attrs = target.partition(":")
        if not module_name or not attrs:
            raise AppLoadError(f"Import string {target!r} must be in format 'MODULE:ATTRIBUTE'.")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
                raise  # the app's own import failed: show the real traceback
            raise AppLoadError(f"Could not import module {module_name!r}: {exc}") from None
        app = module
        logging.getLogger("hybrid.error").debug("Imported %s from %s", module_name,
                                                getattr(module, "__file__", None) or "(no file)")
        for attr in attrs.split("."):
            try:
                app = getattr(app, attr)
            except AttributeError:
                raise AppLoadError(f"Attribute {attrs!r} not found in module {module_name!r}.") from None
    if factory:
        if not callable(app):
            raise AppLoadError(f"--factory: {target!r} is not callable.")
        try:
            inspect.signature(app).bind()
        except TypeError:  # (it needs arguments: an app itself, most likely)
            raise AppLoadError(f"--factory: {target!r} is not a factory: it cannot be called with no arguments "
                               "(drop --factory if it is the application itself).") from None
        except ValueError:  # (no signature to inspect: a builtin; let the call decide)
            pass
        app = app()
    if not callable(app):
        raise AppLoadError(f"{target!r} is not an ASGI application (not callable).")
    from hybrid.uvicorn_compat import adapt_interface

    app = adapt_interface(app, interface)  # (--interface: an ASGI 2 app is wrapped as ASGI 3)
    if inspect.isfunction(app) and not inspect.iscoroutinefunction(app):
        raise AppLoadError(
            f"{target!r} is a synchronous function; an ASGI 3 application is 'async def app(scope, receive, send)'."
        )
    return app
