"""The proxy as a lifecycle Component: stop accepting, drain, cut what is left."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import aiohttp
import pytest

from sidecar.config import Address, Config, ProxyConfig
from sidecar.lifecycle import Component
from sidecar.observability import Metrics, Module
from sidecar.proxy import create_proxy
from tests.support.proxy import RELEASE, ProxyFactory, wait_for


async def test_stop_drains_in_flight_requests(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    component: Component = p.component
    assert p.upstream_app is not None
    slow = asyncio.ensure_future(p.session.get(p.url + "/slow"))
    await wait_for(lambda: component.in_flight == 1)
    stopping = asyncio.ensure_future(component.stop(10.0))
    await wait_for(lambda: not p.component.addresses)  # listeners closed
    async with aiohttp.ClientSession() as fresh:
        try:
            async with fresh.get(p.url + "/x") as r:
                refused = False
                await r.read()
        except aiohttp.ClientConnectionError:
            refused = True
    assert refused
    p.upstream_app[RELEASE].set()
    async with await slow as r:
        assert r.status == 200
        assert await r.text() == "late"
    assert await stopping == 0


async def test_stop_cuts_requests_still_running_at_the_timeout(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    assert p.upstream_app is not None
    slow = asyncio.ensure_future(p.session.get(p.url + "/slow"))
    await wait_for(lambda: p.component.in_flight == 1)
    assert await p.component.stop(0.2) == 1
    p.upstream_app[RELEASE].set()
    with contextlib.suppress(aiohttp.ClientError):
        (await slow).close()


async def test_start_on_a_taken_port_raises_and_leaves_nothing_open(
    make_proxy: ProxyFactory,
) -> None:
    p = await make_proxy()
    taken = p.component.addresses[0]
    config = Config(
        proxy=dataclasses.replace(ProxyConfig(), listen=Address("127.0.0.1", taken.port))
    )
    module = Module.new("t")
    component = create_proxy(config, module, Metrics.create(module.meter))
    try:
        with pytest.raises(OSError, match="in use"):
            await component.start()
        assert component.addresses == []  # no listener left bound
        assert p.component.addresses == [taken]  # and the one holding the port is untouched
    finally:
        await module.shutdown()
