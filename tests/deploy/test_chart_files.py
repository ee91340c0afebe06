"""The chart's embedded copies (Helm reads only files inside the chart) match their sources."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.support.chart import CHART_DIR, ROOT

# source (the file people edit) -> the copy under helm/causality-sidecar/files/
COPIES = {
    "deploy/prometheus/rules.yaml": "rules.yaml",
    "deploy/grafana/causality-sidecar.json": "causality-sidecar.json",
}
PLACEHOLDER_KEY = "__placeholder__"


@pytest.mark.parametrize(("source", "copy"), COPIES.items(), ids=list(COPIES.values()))
def test_copy_matches_its_source(source: str, copy: str) -> None:
    src, dst = ROOT / source, CHART_DIR / "files" / copy
    assert dst.is_file(), f"{dst} is missing: run scripts/sync-chart-files"
    if not src.exists():
        # Until the source lands, the copy must be the marked placeholder.
        assert PLACEHOLDER_KEY in json.loads(dst.read_text()), (
            f"{source} missing, {copy} is not a placeholder"
        )
        return
    assert dst.read_bytes() == src.read_bytes(), (
        f"helm/causality-sidecar/files/{copy} differs from {source}: run scripts/sync-chart-files"
    )


def test_sync_script_check_mode_agrees() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "sync-chart-files"), "--check"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_copies_parse() -> None:
    rules = yaml.safe_load((CHART_DIR / "files" / "rules.yaml").read_text())
    assert rules["groups"], "rules.yaml has no rule groups"
    dashboard = json.loads((CHART_DIR / "files" / "causality-sidecar.json").read_text())
    assert dashboard["title"]
