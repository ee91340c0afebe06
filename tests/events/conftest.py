"""Fixtures: the stand-in gateway behind the real proxy (`tests.support.events_proxy`)."""

from __future__ import annotations

import pytest

from tests.support.events_proxy import EventsProxy, EventsProxyFactory, events_proxy_factory
from tests.support.proxy import proxy_engine

__all__ = ["events_proxy_factory", "proxy_engine"]  # fixtures


@pytest.fixture
async def events_proxy(events_proxy_factory: EventsProxyFactory) -> EventsProxy:
    """Gateway + proxy with the default events config (enabled)."""
    return await events_proxy_factory()
