"""Helpers of the merge tests (also used by the export and relabel tests): a fake app's
/metrics served on a real socket (`Target`, fixture ``start_target``), a sidecar admin
app merging targets (`Rig`, fixture ``make_rig``), and readers of a text exposition."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import prometheus_client
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient, AiohttpServer
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

from sidecar.admin import Readiness, create_admin_app
from sidecar.config import AdminConfig, MergeConfig, MergeTarget
from sidecar.instruments import merge_conflicts
from sidecar.merge import create_merge, merge_sources
from sidecar.merge.scraper import MergeScraper
from sidecar.observability import Module
from sidecar.unified import UnifiedCollector
from tests.support.process import free_port

OPENMETRICS_CT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT_CT = "text/plain; version=0.0.4; charset=utf-8"
PROTOBUF_CT = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

SeriesKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Target:
    """A fake app's /metrics: a real server answering with a fixed reply."""

    body: bytes
    content_type: str | None = TEXT_CT
    status: int = 200
    gzip_when_asked: bool = False
    gate: asyncio.Event | None = None  # when set, the reply waits until the event is set
    requests: list[Mapping[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if self.gate is not None:
            await self.gate.wait()
        body, headers = self.body, {}
        if self.gzip_when_asked and "gzip" in request.headers.get("Accept-Encoding", ""):
            body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        # a StreamResponse adds no Content-Type of its own, so "missing" stays missing
        response = web.StreamResponse(status=self.status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response


@dataclass
class Rig:
    """One sidecar admin app merging some targets."""

    module: Module
    client: TestClient[web.Request, web.Application]
    scraper: MergeScraper

    async def scrape(self, headers: Mapping[str, str] | None = None) -> str:
        response = await self.client.get("/metrics", headers=headers or {})
        assert response.status == 200, await response.text()
        return await response.text()


@contextlib.contextmanager
def prometheus_client_server(registry: Collector) -> Iterator[str]:
    """prometheus_client's own HTTP server (``start_http_server``) on 127.0.0.1, serving
    ``registry``; its /metrics URL."""
    port = free_port()
    server, thread = prometheus_client.start_http_server(port, "127.0.0.1", registry)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


StartTarget = Callable[[Target], Awaitable[str]]
MakeRig = Callable[[Sequence[MergeTarget]], Awaitable[Rig]]


@pytest.fixture
def start_target(aiohttp_server: AiohttpServer) -> StartTarget:
    """Serve a `Target` on 127.0.0.1 (a free port); returns its /metrics URL."""

    async def start(target: Target) -> str:
        app = web.Application()
        app.router.add_get("/metrics", target.handle)
        server: TestServer = await aiohttp_server(app, host="127.0.0.1")
        return str(server.make_url("/metrics"))

    return start


@pytest.fixture
async def make_rig(aiohttp_client: AiohttpClient) -> AsyncIterator[MakeRig]:
    """Build a sidecar admin app (own registry + merge targets) behind a real socket."""
    rigs: list[Rig] = []

    async def make(targets: Sequence[MergeTarget]) -> Rig:
        module = Module.new("merge-test")
        unified = UnifiedCollector([module.registry], merge_conflicts(module.meter))
        scraper = create_merge(MergeConfig(tuple(targets)), module.meter)
        readiness = Readiness()
        readiness.set_ready()
        app = create_admin_app(AdminConfig(), unified, readiness, extra=merge_sources(scraper))
        rig = Rig(module, await aiohttp_client(app), scraper)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.scraper.close()
        await rig.module.shutdown()


def samples(text: str) -> dict[SeriesKey, float]:
    """Every sample of a text exposition, keyed by name and label set."""
    out: dict[SeriesKey, float] = {}
    for family in parse_text(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series in the exposition: {key}"
            out[key] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else None


def target(name: str, url: str, timeout: float = 5.0, **labels: str) -> MergeTarget:
    """A merge target config entry."""
    return MergeTarget(name=name, url=url, timeout=timeout, labels=labels)
