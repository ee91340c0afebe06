"""create_ingest: the configured listener, plus [::1] on the same port for 127.0.0.1."""

from __future__ import annotations

import gzip

import aiohttp

from sidecar.config import Address
from sidecar.ingest import create_ingest
from sidecar.observability import Module
from tests.support.ingest import make_config
from tests.support.otlp import PROTOBUF_HEADERS, gauge, number, request
from tests.support.prometheus import free_port

ATTEMPTS = 3  # a port free a moment ago can be taken before we bind it


async def _started(module: Module):
    for attempt in range(ATTEMPTS):
        component, collector = create_ingest(
            make_config(listen=Address("127.0.0.1", free_port())), module
        )
        try:
            await component.start()
        except OSError:
            await component.stop(0)
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return component, collector
    raise AssertionError("unreachable")


async def test_ipv4_and_ipv6_loopback_on_one_port():
    module = Module.new("listeners")
    component, collector = await _started(module)
    try:
        addresses = {(a.host, a.port) for a in component.addresses}
        (port,) = {p for _, p in addresses}
        assert addresses == {("127.0.0.1", port), ("::1", port)}
        body = request(gauge("g", [number(1)])).SerializeToString()
        async with aiohttp.ClientSession() as session:
            for host in ("127.0.0.1", "[::1]"):
                async with session.post(
                    f"http://{host}:{port}/v1/metrics", data=body, headers=PROTOBUF_HEADERS
                ) as response:
                    assert response.status == 200
        assert len(collector.store) == 2  # one series and its target_info
    finally:
        await component.stop(1.0)
        await module.shutdown()


async def test_gzip_request_through_the_real_listener_is_not_inflated_by_aiohttp():
    module = Module.new("listeners-gzip")
    component, collector = await _started(module)
    try:
        (port,) = {a.port for a in component.addresses}
        body = gzip.compress(request(gauge("g", [number(1)])).SerializeToString())
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{port}/v1/metrics",
                data=body,
                headers={**PROTOBUF_HEADERS, "Content-Encoding": "gzip"},
            ) as response,
        ):
            assert response.status == 200
        assert len(collector.store) == 2
    finally:
        await component.stop(1.0)
        await module.shutdown()
