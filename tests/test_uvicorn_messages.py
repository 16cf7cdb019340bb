"""The server's own messages as a uvicorn user meets them (issue 23): each said once, naming what it is about."""

import pytest

from .support import run_cli

pytestmark = pytest.mark.timeout(60)

APPS = "tests.apps.uvicorn_apps"
MARKER = "startup-raised-marker-5d1e"


@pytest.mark.parametrize("app, flags, where", [
    ("startup_reports_and_raises", [], "the loop of thread hybrid-worker-0"),
    ("startup_reports_and_raises", ["--threads", "2"], "the loop of thread hybrid-worker-0"),
    ("startup_raises", ["--lifespan", "on"], "the loop of thread hybrid-worker-0"),
    ("startup_reports_and_raises", ["--mode", "async"], "the async pool's loop"),
])
def test_lifespan_startup_failure_traceback_is_printed_once_naming_the_loop(app, flags, where):
    rc, out = run_cli(f"{APPS}:{app}", "--port", "0", *flags, timeout=15)
    assert rc == 3, out
    lines = out.splitlines()
    assert sum("Traceback (most recent call last)" in line for line in lines) == 1, out
    assert sum(line == f"RuntimeError: {MARKER}" for line in lines) == 1, out
    errors = [line for line in lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and f"Application startup failed ({where}): Traceback" in errors[0], out
