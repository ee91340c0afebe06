"""The gzip pass-through of a merge target and relabel rules: the target's own deflate
blocks go out only when no rule changed any of its series (`sidecar.unified` compares
bytes), and a changed target is compressed afresh, relabelled."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import generate_latest as render_text

from sidecar.admin import Readiness, create_admin_app
from sidecar.config import AdminConfig, MergeConfig, config_from_dict
from sidecar.merge import create_merge, merge_sources
from sidecar.merge import scraper as scraper_module
from sidecar.merge.scraper import SMALL_REPLY, MergeScraper, on_loopback
from sidecar.observability import Module
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import compile_rules
from sidecar.unified import UnifiedCollector
from tests.support.merge import (
    TEXT_CT,
    StartTarget,
    Target,
    prometheus_client_server,
    start_target,
    target,
)
from tests.support.passthrough import app_registry, blocks
from tests.support.prometheus import check_metrics

__all__ = ["start_target"]  # fixture

ACCEPT = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}


@pytest.mark.parametrize(
    ("rules", "passed_on", "present", "absent"),
    [
        ([{"action": "drop", "match": {"__name__": "go_.*"}}], True,
         'app_inflight{route="/r/10"}', "go_"),
        ([{"action": "drop", "match": {"__name__": "app_latency_.*"}}], False,
         'app_inflight{route="/r/10"}', "app_latency_seconds"),
        ([{"action": "labeldrop", "regex": "code"}], False,
         'app_requests_total{route="/r/10"}', 'code="200"'),
    ],
    ids=["untouched", "a family dropped", "a label dropped"],
)  # fmt: skip
async def test_pass_through_only_when_no_series_changed(
    start_target: StartTarget,
    aiohttp_client: AiohttpClient,
    rules: list[dict[str, Any]],
    passed_on: bool,
    present: str,
    absent: str,
) -> None:
    body = render_text(app_registry())
    url = await start_target(Target(body, TEXT_CT, gzip_when_asked=True))
    client, scraper, module = await _relabelling_rig(aiohttp_client, url, rules)
    try:
        response = await client.get("/metrics", headers=ACCEPT, auto_decompress=False)
        raw = await response.read()
        assert response.headers["Content-Encoding"] == "gzip"
        assert (blocks(body) in raw) is passed_on
        text = zlib.decompress(raw, 31).decode()
        assert present in text
        assert absent not in text.split("# HELP app_", 1)[1]  # in the target's part
        assert check_metrics(text).passes
    finally:
        await scraper.close()
        await module.shutdown()


def _big_body() -> bytes:
    """A target body past `SMALL_REPLY` (one asked for gzip while it is passed on)."""
    lines = [f'app_x{{i="{i}",code="200"}} {i}\n'.encode() for i in range(20_000)]
    body = b"# HELP app_x X\n# TYPE app_x gauge\n" + b"".join(lines)
    assert len(body) > SMALL_REPLY
    return body


async def _relabelling_rig(
    aiohttp_client: AiohttpClient, url: str, rules: list[dict[str, Any]]
) -> tuple[TestClient[web.Request, web.Application], MergeScraper, Module]:
    """A sidecar admin app merging the target at ``url`` through ``rules``."""
    module = Module.new("relabel-test")
    compiled = compile_rules(config_from_dict({"relabel": rules}).relabel)
    unified = UnifiedCollector([module.registry], relabel=Relabeller(compiled))
    scraper = create_merge(MergeConfig((target("app", url),)), module.meter)
    readiness = Readiness()
    readiness.set_ready()
    app = create_admin_app(AdminConfig(), unified, readiness, extra=merge_sources(scraper))
    return await aiohttp_client(app), scraper, module


@pytest.mark.parametrize(
    ("rules", "recheck", "asked"),
    [
        ([{"action": "drop", "match": {"__name__": "go_.*"}}], 300.0, ["gzip"] * 3),
        ([{"action": "labeldrop", "regex": "code"}], 300.0, ["gzip", "identity", "identity"]),
        ([{"action": "labeldrop", "regex": "code"}], 0.0, ["gzip"] * 3),
    ],
    ids=["passed on: gzip", "rewritten: identity", "rewritten, recheck due: gzip again"],
)  # fmt: skip
async def test_a_rewritten_loopback_target_is_asked_without_gzip(
    start_target: StartTarget,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
    rules: list[dict[str, Any]],
    recheck: float,
    asked: list[str],
) -> None:
    """Its compression would be undone and done again: the sidecar compresses the answer
    itself, and the target is asked for gzip again after `REWRITTEN_RECHECK_S`."""
    monkeypatch.setattr(scraper_module, "REWRITTEN_RECHECK_S", recheck)
    app = Target(_big_body(), TEXT_CT, gzip_when_asked=True)
    client, scraper, module = await _relabelling_rig(aiohttp_client, await start_target(app), rules)
    try:
        for _ in range(3):
            response = await client.get("/metrics", headers=ACCEPT)
            text = await response.text()
            assert response.headers["Content-Encoding"] == "gzip"
            assert 'app_x{i="19999"' in text
            assert ('code="200"' in text) is (rules[0]["action"] == "drop")
        assert [request["Accept-Encoding"] for request in app.requests] == asked
    finally:
        await scraper.close()
        await module.shutdown()


@pytest.fixture
def prometheus_client_target() -> Iterator[str]:
    """prometheus_client's own HTTP server on 127.0.0.1 (it gzips when asked, at level 9),
    serving 20,000 series."""
    registry = CollectorRegistry()
    gauge = Gauge("app_x", "X", ["i", "code"], registry=registry)
    for i in range(20_000):
        gauge.labels(str(i), "200").set(i)
    with prometheus_client_server(registry) as url:
        yield url


async def test_prometheus_client_is_asked_plain_once_its_series_are_rewritten(
    prometheus_client_target: str, aiohttp_client: AiohttpClient
) -> None:
    """Against prometheus_client's server: the first reply comes gzipped (a member is
    kept), and once the rules rewrote it the next comes plain; the answer is right both
    times and valid for promtool."""
    rules = [{"action": "labeldrop", "regex": "code"}]
    client, scraper, module = await _relabelling_rig(
        aiohttp_client, prometheus_client_target, rules
    )
    try:
        members = []
        for _ in range(2):
            (scrape,) = await scraper.scrape()  # what the next /metrics would ask
            members.append(scrape.member is not None)
            response = await client.get("/metrics", headers=ACCEPT)
            text = await response.text()
            assert 'app_x{i="19999"} 19999.0' in text
            assert 'code="' not in text
            assert check_metrics(text).passes
        assert members == [True, False]
    finally:
        await scraper.close()
        await module.shutdown()


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:9100/metrics", True),
        ("http://127.8.9.1:9100/metrics", True),
        ("http://localhost:9100/metrics", True),
        ("http://[::1]:9100/metrics", True),
        ("http://10.0.0.7:9100/metrics", False),
        ("http://app.default.svc:9100/metrics", False),
        ("https://[2001:db8::1]/metrics", False),
    ],
)  # fmt: skip
def test_on_loopback(url: str, loopback: bool) -> None:
    assert on_loopback(url) is loopback
