"""Shipped files read on their own: no citations of documents users lack, no dead links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(10)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("README.md", "Dockerfile", "cmd", "deploy", "docs", "printery", "bench/README.md")


def shipped_files() -> list[Path]:
    found: list[Path] = []
    for name in SHIPPED:
        path = REPO / name
        found += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [p for p in found if "__pycache__" not in p.parts]


def test_no_shipped_file_cites_a_design_section() -> None:
    """Users have no DESIGN document: README, deploy/, docs and code comments never cite one."""
    citing = [
        str(p.relative_to(REPO))
        for p in shipped_files()
        if re.search(r"DESIGN\s*(§|\\u00a7)", p.read_text(encoding="utf-8", errors="replace"))
    ]
    assert [] == citing


@pytest.mark.parametrize("page", ["README.md", "docs/events.md", "docs/operations.md"])
def test_relative_links_of_the_docs_resolve(page: str) -> None:
    """Every relative Markdown link of the page names a file of the repository."""
    text = (REPO / page).read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if not ((REPO / page).parent / t).exists()]
    assert [] == missing
