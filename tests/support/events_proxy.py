"""The stand-in gateway on 127.0.0.1 behind the real proxy, with inspection on (fixture
``events_proxy_factory``, under both proxy engines). Used by the events tests."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from sidecar.config import Address, Config, EventsConfig, ProxyConfig
from sidecar.demo.gateway import GATEWAY, GatewayState, create_gateway_app
from sidecar.events import EventInspector
from sidecar.observability import Metrics, Module
from sidecar.proxy import ProxyComponent, create_proxy, proxy_views
from tests.support.event_metrics import value
from tests.support.events import FakeClock


@dataclass
class EventsProxy:
    """The proxy in front of the stand-in gateway, and what tests need around it."""

    url: str
    module: Module
    component: ProxyComponent
    gateway: GatewayState
    clock: FakeClock
    session: aiohttp.ClientSession

    def text(self) -> str:
        """The proxy's registry, as /metrics would render it."""
        return generate_latest(self.module.registry).decode()

    def value(self, name: str, **labels: str) -> float:
        """One sample of the proxy's registry (0 when absent)."""
        return value(self.text(), name, labels)

    async def post(
        self, path: str, body: bytes | Any, content_type: str | None, **headers: str
    ) -> tuple[int, bytes, str | None]:
        """POST through the proxy: (status, body, content type) of the answer."""
        skip: tuple[str, ...] = ()
        if content_type is None:
            skip = ("Content-Type",)  # aiohttp would say application/octet-stream
        else:
            headers["Content-Type"] = content_type
        async with self.session.post(
            self.url + path, data=body, headers=headers, skip_auto_headers=skip
        ) as response:
            return response.status, await response.read(), response.headers.get("Content-Type")

    async def wait_for_value(self, name: str, expected: float, **labels: str) -> None:
        """Poll the registry until a sample reaches `expected` (inspection of a response
        finishes just after the client has it), failing after a deadline."""
        deadline = time.monotonic() + 10.0
        while (current := self.value(name, **labels)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{labels} = {current}, expected {expected}")
            await asyncio.sleep(0.01)


EventsProxyFactory = Callable[..., Awaitable[EventsProxy]]


@pytest.fixture
async def events_proxy_factory(
    aiohttp_server: Any,
    proxy_engine: str,
) -> AsyncIterator[EventsProxyFactory]:
    """Start gateway + proxy (under both engines: `proxy_engine`); keyword arguments
    override `EventsConfig` fields."""
    started: list[EventsProxy] = []

    async def factory(**events: Any) -> EventsProxy:
        app: web.Application = create_gateway_app(keep_bodies=True)
        server = await aiohttp_server(app)
        proxy_config = dataclasses.replace(
            ProxyConfig(),
            listen=Address("127.0.0.1", 0),
            upstream=f"http://127.0.0.1:{server.port}",
            engine=proxy_engine,
        )
        events_config = dataclasses.replace(EventsConfig(enabled=True), **events)
        config = Config(proxy=proxy_config, events=events_config)
        module = Module.new("events-test", views=proxy_views(proxy_config))
        clock = FakeClock()
        inspector = EventInspector(events_config, module.meter, clock=clock)
        component = create_proxy(config, module, Metrics.create(module.meter), inspector)
        await component.start()
        url = f"http://127.0.0.1:{component.addresses[0].port}"
        # no Accept-Encoding unless a test sends one: answers arrive as the gateway wrote them
        session = aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("Accept-Encoding",)
        )
        proxy = EventsProxy(url, module, component, app[GATEWAY], clock, session)
        started.append(proxy)
        return proxy

    yield factory
    for proxy in started:
        await proxy.session.close()
        await proxy.component.stop(1.0)
        await proxy.module.shutdown()
