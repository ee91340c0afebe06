"""The status page and debug endpoints on a running proxy + admin pair, and in Chromium.

The sidecar's real parts run in the test's loop on loopback: the demo app as upstream, the
proxy (`sidecar.proxy.create_proxy`) and the admin app with `add_status_routes`, wired the
way `sidecar.server.Sidecar.build` is to wire them (until it does, this test does it).
Traffic goes through the proxy; the sampler runs every 0.2 s so the sparklines fill fast.
"""

from __future__ import annotations

import asyncio
import html.parser
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sidecar.admin import create_admin_app
from sidecar.config import Config, config_from_dict
from sidecar.demo.app import create_demo_app
from sidecar.lifecycle import AiohttpComponent
from sidecar.proxy import create_proxy
from sidecar.server import Sidecar
from sidecar.status import StatusSources, TrafficSampler, add_status_routes
from sidecar.status.routes import upstream_state
from tests.support import browser

TOKEN = "t0ps3cret-token"
EXPORT_SECRET = "Bearer s3cr3t-export"
PATHS = ("/", "/users/7", "/users/4242", "/error", "/slow?ms=5")
SAMPLE_INTERVAL_S = 0.2


@dataclass
class Running:
    """A proxy and an admin app serving the status pages."""

    proxy_url: str
    admin_url: str
    sampler: TrafficSampler
    session: aiohttp.ClientSession

    async def get(self, path: str, token: str | None = None) -> tuple[int, str, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(self.admin_url + path, headers=headers) as response:
            return response.status, response.content_type, await response.text()

    async def traffic_until_sampled(self, snapshots: int = 6) -> None:
        """Proxy requests until the ring holds ``snapshots`` samples with traffic."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for path in PATHS:
                async with self.session.get(self.proxy_url + path) as response:
                    await response.read()
            with_traffic = [s for s in self.sampler.ring if s.routes]
            if len(with_traffic) >= snapshots and len(self.sampler.window()) >= 3:
                return
            await asyncio.sleep(SAMPLE_INTERVAL_S / 2)  # pacing the traffic, not synchronising
        raise AssertionError(f"sampler ring never filled: {len(self.sampler.ring)} snapshots")


def _config(upstream: str, token_file: Path | None) -> Config:
    admin: dict[str, Any] = {"listen": "127.0.0.1:0"}
    if token_file is not None:
        admin["bearer_token_file"] = str(token_file)
    return config_from_dict(
        {
            "proxy": {"listen": "127.0.0.1:0", "upstream": upstream},
            "admin": admin,
            "ingest": {"enabled": False},
            "export": {
                "otlp": {
                    "endpoint": "http://user:pw-in-url@127.0.0.1:9/v1/metrics",
                    "headers": {"Authorization": EXPORT_SECRET},
                }
            },
        }
    )


async def _running(upstream: TestServer, token_file: Path | None) -> AsyncIterator[Running]:
    config = _config(str(upstream.make_url("")).rstrip("/"), token_file)
    sidecar = Sidecar(config)
    proxy = create_proxy(config, sidecar.module, sidecar.metrics)
    admin_app = create_admin_app(config.admin, sidecar.collector(), sidecar.readiness)
    sampler = TrafficSampler(sidecar.module.registry, interval=SAMPLE_INTERVAL_S)
    components: list[Any] = [proxy]
    add_status_routes(
        admin_app,
        StatusSources(
            config=config,
            readiness=sidecar.readiness,
            started_at=sidecar.started_at,
            collectors={"sidecar": sidecar.module.registry},
            listeners=lambda: {c.name: [str(a) for a in c.addresses] for c in components},
            sampler=sampler,
        ),
    )
    admin = AiohttpComponent("admin", admin_app, [config.admin.listen])
    components.append(admin)
    await proxy.start()
    await admin.start()
    sidecar.readiness.set_ready()
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(
                f"http://{proxy.addresses[0]}", f"http://{admin.addresses[0]}", sampler, session
            )
    finally:
        await admin.stop(0)
        await proxy.stop(0)
        await sidecar.module.shutdown()


@pytest.fixture
async def running(aiohttp_server: Any) -> AsyncIterator[Running]:
    upstream = await aiohttp_server(create_demo_app())
    async for r in _running(upstream, None):
        yield r


@pytest.fixture
async def protected(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Running]:
    upstream = await aiohttp_server(create_demo_app())
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    async for r in _running(upstream, token_file):
        yield r


class _Assets(html.parser.HTMLParser):
    """Collects every attribute that could load something from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action") and value and "//" in value:
                self.external.append(f"{tag} {name}={value}")


async def test_status_page_shows_sidecar_traffic_and_metrics(running: Running) -> None:
    await running.traffic_until_sampled()
    status, content_type, page = await running.get("/")
    assert (status, content_type) == (200, "text/html")
    assert "causality-sidecar" in page
    assert '<meta http-equiv="refresh" content="5">' in page
    assert 'href="/?refresh=0"' in page
    assert "answers" in page  # the upstream check
    assert "<code>/users/{id}</code>" in page  # the route template, not the raw path
    assert page.count('<svg class="spark rate"') >= 3
    assert page.count('<svg class="spark p99"') >= 3
    assert "<polyline" in page
    assert "http_request_duration_milliseconds" in page  # top metrics by series
    assert EXPORT_SECRET not in page
    assert "pw-in-url" not in page
    parser = _Assets()
    parser.feed(page)
    assert parser.external == []
    assert "script" not in parser.tags
    assert "link" not in parser.tags


async def test_refresh_can_be_turned_off(running: Running) -> None:
    status, _, page = await running.get("/?refresh=0")
    assert status == 200
    assert 'http-equiv="refresh"' not in page
    assert '<a href="/">turn auto-refresh on</a>' in page


async def test_debug_series_is_json_largest_first(running: Running) -> None:
    await running.traffic_until_sampled(snapshots=1)
    async with running.session.get(running.admin_url + "/debug/series?limit=3") as response:
        assert response.status == 200
        report = await response.json()
    assert len(report["metrics"]) == 3
    counts = [m["series"] for m in report["metrics"]]
    assert counts == sorted(counts, reverse=True)
    assert report["sources"]["sidecar"] == report["total"] > 0
    assert {"metric", "source", "series"} == set(report["by_source"][0])
    status, _, body = await running.get("/debug/series?limit=lots")
    assert status == 400
    assert "limit" in body


async def test_debug_config_is_redacted_json(running: Running) -> None:
    async with running.session.get(running.admin_url + "/debug/config") as response:
        assert response.status == 200
        body = await response.text()
        config = await response.json()
    assert config["export"]["otlp"]["headers"] == {"Authorization": "<redacted>"}
    assert config["export"]["otlp"]["endpoint"] == "http://<redacted>@127.0.0.1:9/v1/metrics"
    assert config["proxy"]["listen"] == "127.0.0.1:0"
    assert EXPORT_SECRET not in body
    assert "pw-in-url" not in body


@pytest.mark.parametrize("path", ["/", "/debug/series", "/debug/config", "/metrics"])
async def test_pages_need_the_bearer_token_like_metrics(protected: Running, path: str) -> None:
    status, _, _ = await protected.get(path)
    assert status == 401
    status, _, _ = await protected.get(path, token="wrong")
    assert status == 401
    status, _, _ = await protected.get(path, token=TOKEN)
    assert status == 200
    status, _, _ = await protected.get("/healthz")
    assert status == 200  # probes stay open


async def test_upstream_state_says_why_it_does_not_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound but not listening: connection refused
        ok, why = await upstream_state(f"http://127.0.0.1:{closed}")
    assert not ok
    assert "does not answer" in why
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert await upstream_state(f"http://127.0.0.1:{port}") == (True, "answers")


async def test_chromium_renders_the_page(
    running: Running, tmp_path: Path, record_property: Any
) -> None:
    await running.traffic_until_sampled()
    dom = await browser.dump_dom(running.admin_url + "/")
    assert 'id="traffic"' in dom
    assert "<code>/users/{id}</code>" in dom
    assert dom.count("<polyline") >= 3
    assert "Top metrics by series" in dom
    shot = await browser.screenshot(running.admin_url + "/?refresh=0", tmp_path / "status.png")
    print(f"status page screenshot: {shot}")
    record_property("screenshot", str(shot))
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank image
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
