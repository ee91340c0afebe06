"""The gzip pass-through of a merge target and relabel rules: the target's own deflate
blocks go out only when no rule changed any of its series (`sidecar.unified` compares
bytes), and a changed target is compressed afresh, relabelled."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from aiohttp.pytest_plugin import AiohttpClient
from prometheus_client.exposition import generate_latest as render_text

from sidecar.admin import Readiness, create_admin_app
from sidecar.config import AdminConfig, MergeConfig, config_from_dict
from sidecar.merge import create_merge, merge_sources
from sidecar.observability import Module
from sidecar.relabel.families import Relabeller
from sidecar.relabel.rules import compile_rules
from sidecar.unified import UnifiedCollector
from tests.support.merge import TEXT_CT, StartTarget, Target, start_target, target
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
    module = Module.new("relabel-test")
    compiled = compile_rules(config_from_dict({"relabel": rules}).relabel)
    unified = UnifiedCollector([module.registry], relabel=Relabeller(compiled))
    scraper = create_merge(MergeConfig((target("app", url),)), module.meter)
    readiness = Readiness()
    readiness.set_ready()
    app = create_admin_app(AdminConfig(), unified, readiness, extra=merge_sources(scraper))
    client = await aiohttp_client(app)
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
