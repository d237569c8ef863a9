"""The README and docs/ name only files the repository has: every relative link leads to
a file, and every Markdown file named in backquotes exists (a page that points a new
user to a file they cannot open is a dead end)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_NAMED_PAGE = re.compile(r"`([A-Za-z0-9_./-]+\.md)`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_page_names_is_in_the_repository(page: Path) -> None:
    text = page.read_text()
    links = [t for t in _LINK.findall(text) if not t.startswith(("http://", "https://"))]
    for target in links:
        assert (page.parent / target).exists(), f"{page.name} links to {target}, not in the repo"
    for name in _NAMED_PAGE.findall(text):
        bases = (ROOT, page.parent, ROOT / "docs")
        assert any((base / name).exists() for base in bases), f"{page.name} names {name}"


def test_the_check_finds_a_missing_page(tmp_path: Path) -> None:
    assert _NAMED_PAGE.findall("the plan in `shared/ARCHITECTURE.md`.") == [
        "shared/ARCHITECTURE.md"
    ]
    assert _LINK.findall("see [it](docs/missing.md#part)") == ["docs/missing.md"]


def test_make_demo_needs_no_apt_get_and_make_test_uses_it_as_the_readme_says() -> None:
    """`make -n` prints the commands without running them."""
    import subprocess

    def planned(target: str) -> str:
        done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "apt-get" not in planned("demo")
    assert "apt-get install" in planned("test")
    readme = (ROOT / "README.md").read_text()
    for package in ("redis-server", "prometheus-alertmanager", "buildah", "apt-get"):
        assert package in readme
