"""uvicorn's log configs work unchanged (issue 23): its default LOGGING_CONFIG (as JSON, a dict) and the same as
an .ini file name uvicorn's formatter classes and loggers, which hybrid maps onto its own without uvicorn
installed; the access line carries uvicorn's fields (client_addr, request_line, status_code)."""

import json
import re

import httpx
import pytest

from .support import Server, run_cli

pytestmark = pytest.mark.timeout(60)

BASIC = "tests.apps.basic:app"

# uvicorn.config.LOGGING_CONFIG, as uvicorn ships it (a public config, copied as data: uvicorn is not imported)
UVICORN_LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

# The same as a logging.config.fileConfig file
UVICORN_INI = """
[loggers]
keys=root,uvicorn,uvicorn_error,uvicorn_access

[handlers]
keys=default,access

[formatters]
keys=default,access

[logger_root]
level=WARNING
handlers=

[logger_uvicorn]
level=INFO
handlers=default
propagate=0
qualname=uvicorn

[logger_uvicorn_error]
level=INFO
handlers=
qualname=uvicorn.error

[logger_uvicorn_access]
level=INFO
handlers=access
propagate=0
qualname=uvicorn.access

[handler_default]
class=StreamHandler
formatter=default
args=(sys.stderr,)

[handler_access]
class=StreamHandler
formatter=access
args=(sys.stdout,)

[formatter_default]
class=uvicorn.logging.DefaultFormatter
format=%(levelprefix)s %(message)s

[formatter_access]
class=uvicorn.logging.AccessFormatter
format=%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s
"""

# A plain logging.Formatter with uvicorn's access fields: the record itself must carry them
PLAIN_FIELDS_CONFIG = {
    "version": 1,
    "formatters": {"plain": {"format": 'PLAIN %(client_addr)s - "%(request_line)s" %(status_code)s'},
                   "error": {"format": "%(levelname)s %(message)s"}},
    "handlers": {"access": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"},
                 "error": {"class": "logging.StreamHandler", "formatter": "error", "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
                "uvicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False}},
}

ACCESS = r'127\.0\.0\.1:\d+ - "GET /\?q=1 HTTP/1\.1" 200 OK'


def _write(tmp_path, kind: str):
    if kind == "ini":
        path = tmp_path / "logging.ini"
        path.write_text(UVICORN_INI)
    else:
        path = tmp_path / "logging.json"
        path.write_text(json.dumps(UVICORN_LOGGING_CONFIG if kind == "json" else PLAIN_FIELDS_CONFIG))
    return path


@pytest.mark.parametrize("kind, access_line, listening", [
    ("json", "INFO:     " + ACCESS, "INFO:     Listening on "),
    ("ini", "INFO:     " + ACCESS, "INFO:     Listening on "),
    ("plain", "PLAIN " + ACCESS, "INFO Listening on "),
])
def test_uvicorn_log_config_works_unchanged(tmp_path, kind, access_line, listening):
    with Server(BASIC, "--port", "0", "--log-config", str(_write(tmp_path, kind))) as srv:
        assert httpx.get(srv.url + "/?q=1", timeout=5).status_code == 200
        assert srv.stop() == 0
    lines = srv.output.splitlines()
    assert [line for line in lines if re.fullmatch(access_line, line)], srv.output
    assert [line for line in lines if line.startswith(listening)], srv.output  # hybrid.error is uvicorn.error's


def test_log_config_naming_a_missing_class_says_why_in_one_line(tmp_path):
    config = json.loads(json.dumps(UVICORN_LOGGING_CONFIG))
    config["formatters"]["default"]["()"] = "uvicorn.logging.NoSuchFormatter"
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    rc, out = run_cli(BASIC, "--port", "0", "--log-config", str(path), timeout=10)
    lines = [line for line in out.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, out
    assert "formatter 'default'" in lines[0] and "uvicorn" in lines[0], out  # (the cause, not only "Unable to")
