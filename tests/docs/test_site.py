"""The docs site: a short README that links into docs/, and an MkDocs build that fails on
a broken link, a missing anchor or a page left out of the navigation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from tests.support.doc_blocks import ROOT, doc_files

MKDOCS = [sys.executable, "-m", "mkdocs"]
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slugify(h, "-") for h in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)}


def test_the_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; details belong in docs/"


def test_the_readmes_links_resolve() -> None:
    """Relative links work on GitHub: the file exists, and an anchor into a page is a heading."""
    text = FENCE.sub("", (ROOT / "README.md").read_text(encoding="utf-8"))
    links = [t for t in LINK.findall(text) if not t.startswith(("http://", "https://", "#"))]
    assert any(t.startswith("docs/") for t in links)
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        missing = not (ROOT / path).exists()
        if missing or (anchor and anchor not in _anchors(ROOT / path)):
            broken.append(target)
    assert broken == []


def test_every_page_of_the_site_has_its_examples_checked() -> None:
    pages = set((ROOT / "docs").rglob("*.md"))
    assert pages
    assert pages <= set(doc_files())


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKDOCS, "build", "--strict", "--config-file", str(root / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=root, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = _build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()
    security = (tmp_path / "site" / "security" / "index.html").read_text(encoding="utf-8")
    assert "Reporting a vulnerability" in security  # SECURITY.md is included, not linked


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The site's sources in a scratch folder, to break."""
    for name in ("mkdocs.yml", "SECURITY.md", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("[gone](no-such-page.md)", "no-such-page.md"),
        ("[gone](proxy.md#no-such-heading)", "no-such-heading"),
    ],
)
def test_a_broken_link_fails_the_build(copy: Path, breakage: str, message: str) -> None:
    page = copy / "docs" / "getting-started.md"
    page.write_text(page.read_text(encoding="utf-8") + f"\n{breakage}\n", encoding="utf-8")
    built = _build(copy, copy / "site")
    assert built.returncode != 0
    assert message in built.stderr


def test_a_page_missing_from_the_navigation_fails_the_build(copy: Path) -> None:
    (copy / "docs" / "orphan.md").write_text("# Orphan\n", encoding="utf-8")
    built = _build(copy, copy / "site")
    assert built.returncode != 0
    assert "orphan.md" in built.stderr
