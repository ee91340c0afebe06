"""Deployment tests: the chart, the image, the plain manifests and the pod end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    """``xdist_group`` is registered by pytest-xdist; runs with ``-p no:xdist`` need it too."""
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker group")
