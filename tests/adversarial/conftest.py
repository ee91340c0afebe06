"""Fixtures of the adversarial suite: the proxy's real-socket fixtures and a counting app.

`make_proxy`, `raw_upstream` and `ingest_factory` are the proxy and ingest suites' own
fixtures (imported from `tests.support`, not copied).
`counting_app` (`tests.support.counting`) is an upstream that counts what reached it, so
every case can assert that nothing arrived that should not have.
"""

from __future__ import annotations

import pytest

from tests.support.counting import counting_app  # noqa: F401
from tests.support.ingest import ingest_factory  # noqa: F401
from tests.support.proxy import make_proxy, proxy_engine, raw_upstream  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    """``xdist_group`` is registered by pytest-xdist; runs with ``-p no:xdist`` need it too."""
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker group")
