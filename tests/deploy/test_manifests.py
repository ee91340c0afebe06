"""deploy/kubernetes/ is the chart's default render (scripts/render-manifests keeps it so)."""

from __future__ import annotations

import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from tests.support.chart import KUBE_VERSIONS, ROOT

MANIFESTS = ROOT / "deploy" / "kubernetes"


def test_manifests_are_in_sync_with_the_chart() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render-manifests"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (
        done.stderr + "\nregenerate: .venv/bin/python scripts/render-manifests"
    )


def test_manifests_are_the_default_install() -> None:
    kinds = sorted(
        doc["kind"]
        for path in MANIFESTS.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    )
    assert kinds == ["ConfigMap", "Deployment", "Service", "Service"]


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda p: p.name)
def test_manifest_validates(path: object) -> None:
    for doc in yaml.safe_load_all(path.read_text()):  # type: ignore[attr-defined]
        assert "namespace" not in doc["metadata"]  # apply into any namespace
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
