"""docs/configuration.md is generated from ServerConfig and the CLI (hybrid/docgen.py) and must not drift; every
key and variable it documents is one the real server accepts."""

import json
import subprocess
import sys

import pytest

from hybrid import docgen

from .support import REPO, Server

pytestmark = pytest.mark.timeout(60)


def test_committed_page_matches_serverconfig_and_cli():
    proc = subprocess.run([sys.executable, "-m", "hybrid.docgen", "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, f"{proc.stderr}\nRegenerate with: .venv/bin/python -m hybrid.docgen"


def test_every_field_has_a_flag_and_every_flag_a_field():
    assert docgen.problems() == []


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


def _env(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


OVERRIDES = {"app": "tests.apps.basic:app", "port": 0}


def _documented() -> list[dict]:
    page = docgen.DOC.read_text()
    options = [o for o in docgen.options() if f"`{o['env']}`" in page and f"`{o['field']}`" in page]
    assert len(options) == len(docgen.options())
    return [o for o in options if OVERRIDES.get(o["field"], o["value"]) is not None]


def test_every_documented_file_key_is_accepted(tmp_path):
    lines = [f"{o['key']} = {_toml(OVERRIDES.get(o['field'], o['value']))}" for o in _documented()]
    config = tmp_path / "all.toml"
    config.write_text("\n".join(lines) + "\n")
    with Server("--config", str(config)) as srv, srv.connect() as c:
        assert c.request("GET", "/").body == b"hello, world"


def test_every_documented_environment_variable_is_accepted():
    env = {o["env"]: _env(OVERRIDES.get(o["field"], o["value"])) for o in _documented()}
    with Server(env=env) as srv, srv.connect() as c:
        assert c.request("GET", "/").body == b"hello, world"
