"""The version is written once, in ``sidecar/__init__.py``; everything else derives from it
(pyproject's dynamic version, the tests) or is checked against it here (the Dockerfile's
default, the charts' ``appVersion``, the rendered manifests). Bumping it: CONTRIBUTING.md.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from sidecar import __version__

ROOT = Path(__file__).resolve().parents[2]
CHARTS = sorted(p.parent.name for p in ROOT.glob("helm/*/Chart.yaml"))


def test_the_package_version_is_pyprojects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sidecar.__version__"}


def test_the_images_default_version_label() -> None:
    found = re.findall(r"^ARG VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert found == [__version__]


@pytest.mark.parametrize("chart", CHARTS)
def test_the_charts_app_version(chart: str) -> None:
    meta = yaml.safe_load((ROOT / "helm" / chart / "Chart.yaml").read_text())
    assert meta["appVersion"] == __version__


def test_the_rendered_manifests_version() -> None:
    versions = set()
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        text = path.read_text()
        versions |= set(re.findall(r"app\.kubernetes\.io/version: (\S+)", text))
        versions |= set(re.findall(r"image: \S+/causality-sidecar:(\S+)", text))
    assert versions == {__version__}


KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_changelog_keeps_a_changelog() -> None:
    """Unreleased first, then releases newest first with dates; the six kinds of change
    only; a link for every heading. The version about to ship is the newest or none."""
    text = (ROOT / "CHANGELOG.md").read_text()
    text = text.split("\n## Benchmark history\n")[0]  # the last section: older benchmark runs
    headings = re.findall(r"^## (.*)$", text, re.M)
    assert headings[0] == "[Unreleased]"
    released = []
    for heading in headings[1:]:
        match = re.fullmatch(r"\[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}", heading)
        assert match, heading
        released.append(match.group(1))
    assert released == sorted(released, key=lambda v: tuple(map(int, v.split("."))))[::-1]
    assert __version__ not in released[1:]  # a released version is never reused
    assert set(re.findall(r"^### (.*)$", text, re.M)) <= KINDS
    for name in ["Unreleased", *released]:
        assert re.search(rf"^\[{re.escape(name)}\]: https://", text, re.M), name
