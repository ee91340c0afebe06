"""Deployment tests: the chart, the image, the plain manifests and the pod end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    """``xdist_group`` is registered by pytest-xdist; runs with ``-p no:xdist`` need it too."""
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker group")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` keep this folder's groups on one worker under pytest >= 9.

    pytest-xdist 3.8 tags grouped items by assigning ``item._nodeid``; pytest 9 reads the
    node id from ``item._id`` instead, so the tag is lost and a group's tests (the image
    build, the end-to-end pod with its SIGTERM test last) are spread over workers.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import coerce_node_id  # pytest >= 9; earlier, xdist's tag works
    except ImportError:
        return

    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is None or not item.path.is_relative_to(HERE) or "@" in item.nodeid:
            continue
        group = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
        item._id = coerce_node_id(f"{item.nodeid}@{group}")  # type: ignore[attr-defined]
