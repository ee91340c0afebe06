"""Two whole `Sidecar`s in this process, wired by ``sidecar/server.py``, on loopback.

Sidecar A merges an app's /metrics and pushes its unified view to sidecar B's OTLP
ingest with an interval too long to come round in the test: only the final push on A's
drain (design §10) can bring A's merged and own series into B's /metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer

from sidecar.config import config_from_dict
from sidecar.server import Sidecar
from tests.support.merge import value

LOOPBACK_ANY = "127.0.0.1:0"
APP_METRICS = b"# HELP app_jobs_total Jobs\n# TYPE app_jobs_total counter\napp_jobs_total 42\n"


def config(**extra: Any) -> dict[str, Any]:
    return {
        "proxy": {"listen": LOOPBACK_ANY},
        "admin": {"listen": LOOPBACK_ANY},
        "ingest": {"listen": LOOPBACK_ANY},
        "shutdown": {"drain_delay": 0, "drain_timeout": "1s"},
        **extra,
    }


def address(car: Sidecar, component: str) -> str:
    bound = car.component(component).addresses[0]
    return f"http://{bound.host}:{bound.port}"


@pytest.fixture
async def running() -> AsyncIterator[list[Sidecar]]:
    cars: list[Sidecar] = []
    yield cars
    for car in cars:
        if not car.readiness.reasons:  # not drained by the test
            await car.drain_and_stop()


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        return await response.text()


async def test_merged_and_pushed_between_two_sidecars(
    aiohttp_server: AiohttpServer, running: list[Sidecar]
) -> None:
    async def app_metrics(_: web.Request) -> web.Response:
        return web.Response(body=APP_METRICS, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", app_metrics)
    app_server = await aiohttp_server(app, host="127.0.0.1")

    b = Sidecar(config_from_dict(config(service={"name": "sidecar-b"})))
    await b.start()
    running.append(b)
    a = Sidecar(
        config_from_dict(
            config(
                service={"name": "sidecar-a"},
                merge={
                    "targets": [
                        {
                            "name": "app",
                            "url": str(app_server.make_url("/metrics")),
                            "labels": {"source": "app"},
                        }
                    ]
                },
                export={"otlp": {"endpoint": address(b, "ingest"), "interval": "1h"}},
            )
        )
    )
    await a.start()
    running.append(a)

    a_text = await scrape(address(a, "admin"))
    assert value(a_text, "app_jobs_total", source="app") == 42  # merged into A's /metrics

    before = await scrape(address(b, "admin"))
    assert value(before, "app_jobs_total", source="app") is None  # nothing pushed yet

    a.request_stop()
    await a.drain_and_stop()  # the final push happens here, after A's listeners closed
    assert a.exporter is not None
    assert not a.exporter.running
    b_text = await scrape(address(b, "admin"))
    assert value(b_text, "app_jobs_total", source="app", service_name="sidecar-a") == 42
    assert value(b_text, "sidecar_build_info", service_name="sidecar-a") == 1
    assert (
        value(
            b_text,
            "sidecar_merge_scrapes_total",
            target="app",
            result="success",
            service_name="sidecar-a",
        )
        == 2
    )
