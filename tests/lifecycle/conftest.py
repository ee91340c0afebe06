"""Fixtures of the lifecycle tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.demo_app import demo_app as run_demo_app
from tests.support.process import free_port


@pytest.fixture
def demo_app() -> Iterator[str]:
    """The demo app as its own process; yields its host:port."""
    port = free_port()
    with run_demo_app(port):
        yield f"127.0.0.1:{port}"
