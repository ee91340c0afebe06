"""Fixtures of the ingest tests: an ingest app on loopback (`tests.support.ingest`)."""

from __future__ import annotations

import pytest

from tests.support.ingest import Ingest, ingest_factory

__all__ = ["ingest_factory"]  # a fixture


@pytest.fixture
async def ingest(ingest_factory) -> Ingest:
    return await ingest_factory()
