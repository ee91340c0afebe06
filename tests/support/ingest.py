"""An ingest app served by pytest-aiohttp on loopback, with its own module (fixture
``ingest_factory``), and `make_config`. Used by the ingest and adversarial tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient

from sidecar.config import Config, IngestConfig
from sidecar.ingest import ingest_state
from sidecar.ingest.receiver import SERVER_KWARGS, IngestState, create_ingest_app
from sidecar.observability import Module


@dataclass
class Ingest:
    """A running ingest app: its client, state and the module holding its self metrics."""

    client: TestClient
    state: IngestState
    module: Module


def make_config(**ingest: object) -> Config:
    """A default config with some ``ingest.*`` values replaced."""
    return dataclasses.replace(Config(), ingest=dataclasses.replace(IngestConfig(), **ingest))


@pytest.fixture
async def ingest_factory(aiohttp_server, aiohttp_client) -> AsyncIterator[Callable[..., object]]:
    modules: list[Module] = []

    async def start(**ingest: object) -> Ingest:
        module = Module.new("test-sidecar")
        modules.append(module)
        state = ingest_state(make_config(**ingest), module)
        server = await aiohttp_server(create_ingest_app(state), **SERVER_KWARGS)
        client = await aiohttp_client(server)
        return Ingest(client, state, module)

    yield start
    for module in modules:
        await module.shutdown()
