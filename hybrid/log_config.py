"""--log-config (and ``hybrid.run(log_config=...)``): reading the file, and uvicorn's log configs as they are.

A .json or .yaml/.yml file or a dict goes to ``logging.config.dictConfig``, an .ini file to
``logging.config.fileConfig`` (as uvicorn does). Before either, what a uvicorn config names is renamed to hybrid's
own, so the config works unchanged without uvicorn installed: its formatter classes
(``uvicorn.logging.DefaultFormatter``, ``.AccessFormatter``, ``.ColourizedFormatter``) become
``hybrid.logs.DefaultFormatter`` / ``hybrid.logs.AccessFormatter``, and its loggers ``uvicorn``, ``uvicorn.error``,
``uvicorn.access`` become ``hybrid``, ``hybrid.error``, ``hybrid.access`` (a logger the config also names by hybrid's
name keeps that entry). Every failure is a LogConfigError with one line that names the cause.
"""

from __future__ import annotations

import json

FORMATTERS = {
    "uvicorn.logging.DefaultFormatter": "hybrid.logs.DefaultFormatter",
    "uvicorn.logging.ColourizedFormatter": "hybrid.logs.DefaultFormatter",
    "uvicorn.logging.AccessFormatter": "hybrid.logs.AccessFormatter",
}
LOGGERS = {"uvicorn": "hybrid", "uvicorn.error": "hybrid.error", "uvicorn.access": "hybrid.access"}
# What a uvicorn access format names, which hybrid's access record carries only when a handler's format asks
UVICORN_FIELDS = ("client_addr", "request_line", "status_code")


class LogConfigError(ValueError):
    """--log-config names a file that cannot be used; the message says why, in one line."""


def load_log_config(path):
    """The config, renamed from uvicorn's where it names uvicorn: a dictConfig dict (from a .json or .yaml/.yml
    file, or a dict given to hybrid.run, copied: dictConfig changes it), or the ConfigParser of an .ini file."""
    if isinstance(path, dict):
        if "version" not in path:
            raise LogConfigError("the log_config dict is not a logging dictConfig mapping (it needs 'version': 1)")
        import copy

        return _from_uvicorn(copy.deepcopy(path))
    lower = path.lower()
    if lower.endswith(".ini"):
        return _read_ini(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise LogConfigError(f"cannot read {path!r}: {exc.strerror}") from None
    if lower.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LogConfigError(f"{path!r} is not valid JSON: {exc}") from None
    elif lower.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise LogConfigError(f"{path!r} is YAML, which needs PyYAML (pip install pyyaml); "
                                 "or write the same configuration as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LogConfigError(f"{path!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    else:
        raise LogConfigError(f"{path!r}: the file name must end in .json, .yaml, .yml or .ini")
    if not isinstance(data, dict) or "version" not in data:
        raise LogConfigError(f"{path!r} is not a logging dictConfig mapping (it needs at least 'version': 1)")
    return _from_uvicorn(data)


def apply_log_config(log_config) -> None:
    """Configure logging from ``log_config`` (a file name or a dict); loggers it does not name are kept."""
    data = load_log_config(log_config)
    where = "the log_config dict" if isinstance(log_config, dict) else repr(log_config)
    import logging.config  # (only for a log config: it pulls in socketserver and pickle)

    how = "dictConfig" if isinstance(data, dict) else "fileConfig"
    try:
        if isinstance(data, dict):
            data.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(data)
        else:
            logging.config.fileConfig(data, disable_existing_loggers=False)
    except (ValueError, TypeError, AttributeError, ImportError, KeyError, LookupError, SyntaxError) as exc:
        raise LogConfigError(f"{where} was refused by logging.config.{how}: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    """The exception's first line, and its cause's (dictConfig says only 'Unable to configure formatter ...')."""
    parts = []
    while exc is not None and len(parts) < 3:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        parts.append(text if not isinstance(exc, KeyError) else f"no {text}")
        exc = exc.__cause__
    return ": ".join(parts)


def _from_uvicorn(data: dict) -> dict:
    formatters = data.get("formatters")
    if isinstance(formatters, dict):
        for spec in formatters.values():
            if isinstance(spec, dict):
                for key in ("()", "class"):
                    if isinstance(spec.get(key), str) and spec[key] in FORMATTERS:
                        spec[key] = FORMATTERS[spec[key]]
    loggers = data.get("loggers")
    if isinstance(loggers, dict):
        for theirs, ours in LOGGERS.items():
            if theirs in loggers:
                spec = loggers.pop(theirs)
                loggers.setdefault(ours, spec)
    return data


def _read_ini(path: str):
    import configparser

    parser = configparser.ConfigParser()  # (as fileConfig makes it; it reads the format lines raw)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise LogConfigError(f"cannot read {path!r}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise LogConfigError(f"{path!r} is not a valid .ini file: {str(exc).splitlines()[0]}") from None
    if not parser.has_section("formatters") or not parser.has_section("handlers") \
            or not parser.has_section("loggers"):
        raise LogConfigError(f"{path!r} is not a logging fileConfig file (it needs [loggers], [handlers] and "
                             "[formatters] sections)")
    for section in parser.sections():
        if section.startswith("formatter_"):
            name = parser.get(section, "class", raw=True, fallback=None)
            if name in FORMATTERS:
                parser.set(section, "class", FORMATTERS[name])
        elif section.startswith("logger_"):
            name = parser.get(section, "qualname", raw=True, fallback=None)
            if name in LOGGERS:
                parser.set(section, "qualname", LOGGERS[name])
    return parser


def asks_uvicorn_fields(loggers) -> bool:
    """Whether a handler of these loggers formats with uvicorn's access fields through a formatter that does not
    make them itself (a plain logging.Formatter with uvicorn's access format)."""
    from hybrid.logs import AccessFormatter

    for log in loggers:
        for handler in log.handlers:
            formatter = handler.formatter
            if formatter is None or isinstance(formatter, AccessFormatter):
                continue
            fmt = getattr(getattr(formatter, "_style", None), "_fmt", None) or ""
            if any(field in fmt for field in UVICORN_FIELDS):
                return True
    return False
