"""README.md: the two commands first, quick starts that really serve (each command line taken from the README and
run as a real server against a real app, fetched with httpx), and measured numbers that are in the results files
they cite."""

import re
import subprocess
import sys

import httpx
import pytest

from .support import REPO, Server

pytestmark = pytest.mark.timeout(90)

README = (REPO / "README.md").read_text()

FASTAPI_APP = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"hello": "world"}
"""

STARLETTE_APP = """\
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("hello")

app = Starlette(routes=[Route("/", hello)])
"""


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def quick_start_command(framework: str) -> list[str]:
    """The arguments after `hybrid` in the first sh block of the README's quick start for ``framework``."""
    section = README.split("## Quick starts", 1)[1].split("\n## ", 1)[0]
    part = section.split(f"**{framework}**", 1)[1]
    command = code_blocks(part)[0].strip()
    assert command.startswith("hybrid "), command  # (as installed in the user's environment: no clone's .venv)
    return command.split()[1:]


def test_readme_opens_with_pip_install_then_the_two_commands():
    first, second = code_blocks(README)[:2]
    assert README.index("```sh") < README.index("\n## "), "the install line comes before any section"
    # the distribution's name on the package index (pyproject.toml): "hybrid" there is another project
    assert first.splitlines()[0].startswith("pip install hybrid-asgi ")
    assert 'name = "hybrid-asgi"' in (REPO / "pyproject.toml").read_text()
    assert second.splitlines()[0].startswith("make run ") and second.splitlines()[1].startswith("make test ")


@pytest.mark.parametrize("framework, files, expect", [
    ("FastAPI", {"main.py": FASTAPI_APP}, '{"hello":"world"}'),
    ("Starlette", {"app.py": STARLETTE_APP}, "hello"),
])
def test_quick_start_serves(tmp_path, framework, files, expect):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with Server(*quick_start_command(framework), "--port", "0", cwd=tmp_path) as srv:
        response = httpx.get(srv.url + "/", timeout=10)
    assert response.status_code == 200 and response.text == expect


def test_django_quick_start_serves_and_says_lifespan_is_unsupported(tmp_path):
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite"], cwd=tmp_path, check=True)
    args = quick_start_command("Django")
    assert args == ["mysite.asgi:application"]
    with Server(*args, "--port", "0", cwd=tmp_path / "mysite") as srv:
        response = httpx.get(srv.url + "/", timeout=20)
    assert response.status_code == 200 and "Django" in response.text
    said = "ASGI 'lifespan' protocol appears unsupported."
    assert said in README.replace("\n", " ") and said in srv.output


def test_measured_numbers_are_in_the_results_files_they_cite():
    section = README.split("## Measured", 1)[1].split("\n## ", 1)[0]
    cited = re.findall(r"`(bench/results/[\w.-]+\.md)`", section)
    assert "bench/results/2026-11-27-partial.md" in cited and len(cited) >= 3
    texts = {name: (REPO / name).read_text() for name in cited}
    flat = " ".join(" ".join(t.split()) for t in texts.values())
    for quoted in re.findall(r'"(Run [^"]+)"', " ".join(section.split())):
        assert quoted in flat, f"README quotes a run line no cited file has: {quoted}"
    for quoted in re.findall(r'Machine line: "([^"]+)"', " ".join(section.split())):
        assert quoted in flat, quoted
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| load")]
    assert len(rows) >= 10
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        for cell in filter(None, cells):
            assert re.search(rf"(?<![\d,.]){re.escape(cell)}(?![\d,])", flat), f"{cell!r} ({row}) not in {cited}"


def test_benchmarks_page_has_a_plot_per_scenario_from_the_results():
    """docs/benchmarks.md (python -m bench.report): one PNG per scenario section, each file a real PNG."""
    page = (REPO / "docs" / "benchmarks.md").read_text()
    images = re.findall(r"!\[(\w+)\]\((img/[\w-]+\.png)\)", page)
    sections = re.findall(r"^### ([^\n]+)", page, re.M)
    assert len(images) >= 10, images
    for _name, rel in images:
        data = (REPO / "docs" / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, rel
    for source in re.findall(r"\(`(bench/results/[\w.-]+\.json)`\)", page):
        assert (REPO / source).exists(), source
    assert any("Access log and metrics" in s for s in sections), "the access_log rows are on the page"
    assert "access_log" in dict(images)


def test_quick_starts_work_from_a_users_project():
    """No command of the README runs the clone's `.venv/bin/hybrid` (a user's project has none), and the Python
    snippet that starts workers does it under the `if __name__ == "__main__":` guard (each worker imports it)."""
    assert ".venv/bin/hybrid" not in README
    snippets = re.findall(r"```python\n(.*?)```", README, re.S)
    runs = [s for s in snippets if "hybrid.run(" in s and "workers=" in s]
    assert runs, "the README shows hybrid.run with workers"
    for snippet in runs:
        guard = snippet.index('if __name__ == "__main__":')
        assert guard < snippet.index("hybrid.run("), snippet

