"""Every bad option, bad APP string and bad --factory is ONE line of output (no usage dump, no traceback).

Exit codes: 2 for anything wrong with the command line, the environment or the --config file (APP not
MODULE:ATTRIBUTE included); 1 for an app that cannot be loaded (docs/configuration.md)."""

import pytest

from .support import run_cli

pytestmark = pytest.mark.timeout(40)


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "args, env, needle",
    [
        (["tests.apps.basic:app", "--port", "abc"], None, "--port"),
        (["tests.apps.basic:app", "--workers", "0"], None, "--workers"),
        (["tests.apps.basic:app", "--no-such-flag"], None, "--no-such-flag"),
        (["tests.apps.basic:app"], {"HYBRID_PORT": "abc"}, "HYBRID_PORT"),
        (["main"], None, "'main'"),
        ([":app"], None, "':app'"),
    ],
)
def test_bad_option_is_one_line_exit_2(args, env, needle):
    rc, out = run_cli(*args, env=env)
    assert rc == 2, out
    lines = _lines(out)
    assert len(lines) == 1, f"{len(lines)} lines:\n{out}"
    assert lines[0].startswith("hybrid: error: ") and needle in lines[0], out


def test_bad_toml_file_is_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("port = \nworkers = [\n")
    rc, out = run_cli("tests.apps.basic:app", "--config", str(path))
    assert rc == 2, out
    lines = _lines(out)
    assert len(lines) == 1, f"{len(lines)} lines:\n{out}"
    assert "--config" in lines[0] and "bad.toml" in lines[0], out


def test_factory_on_an_app_is_one_line_exit_1():
    rc, out = run_cli("tests.apps.basic:app", "--factory", "--port", "0")
    assert rc == 1, out
    lines = _lines(out)
    assert len(lines) == 1, f"{len(lines)} lines:\n{out}"
    assert "is not a factory" in lines[0] and "Traceback" not in out, out


def test_missing_module_is_one_line_exit_1():
    rc, out = run_cli("tests.apps.does_not_exist_q7:app", "--port", "0")
    assert rc == 1, out
    lines = _lines(out)
    assert len(lines) == 1 and "does_not_exist_q7" in lines[0], out
