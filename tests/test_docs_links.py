"""README.md and docs/*.md: every relative link points at a file that exists and, with a #fragment, at a heading of
that file (GitHub's anchors), and every `docs/NAME.md` named in the text exists. Pages get split and sections move
(docs/architecture.md -> docs/internals.md); a link left behind is found here, not by a reader."""

import re

import pytest

from .support import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def anchors(page) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (hyphens kept), each space a hyphen."""
    headings = re.findall(r"^#+ (.+)$", strip_code(page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def strip_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    text = strip_code(page.read_text())
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, fragment = target.partition("#")
        dest = (page.parent / path) if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no such heading in {dest.name}")
    for named in sorted(set(re.findall(r"\bdocs/[\w-]+\.md\b", text))):
        if not (REPO / named).exists():
            broken.append(f"{named}: named, does not exist")
    assert not broken, f"{page.name}: {broken}"
