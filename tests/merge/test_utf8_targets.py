"""Merge targets are asked with the scraper's escaping offer.

A target served by prometheus_client's own HTTP server (``start_http_server``, which
honours ``escaping`` in ``Accept`` since 0.21) has a family with a UTF-8 name and label.
A scraper that allows UTF-8 (Prometheus 3's default header) gets them as the target
wrote them; one that asks for ``escaping=dots`` gets them escaped by dots (the target
asked with that scheme); Prometheus 2 (no ``escaping``) gets today's underscores.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from sidecar.protobuf import CONTENT_TYPE
from tests.support.merge import MakeRig, prometheus_client_server, target
from tests.support.protobuf import by_name

PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


class _Dotted:
    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("http.server.active", "Active requests.", labels=["url.path"])
        gauge.add_metric(["/a"], 3.0)
        yield gauge


@pytest.fixture
def utf8_target() -> Iterator[str]:
    """prometheus_client's own HTTP server on 127.0.0.1, serving a UTF-8 family."""
    version = importlib.metadata.version("prometheus_client")
    assert tuple(map(int, version.split(".")[:2])) >= (0, 21)  # escaping honoured
    registry = CollectorRegistry()
    registry.register(_Dotted())
    with prometheus_client_server(registry) as url:
        yield url


async def test_a_utf8_scraper_gets_the_targets_utf8_names(
    utf8_target: str, make_rig: MakeRig
) -> None:
    rig = await make_rig([target("app", utf8_target)])
    response = await rig.client.get("/metrics", headers={"Accept": PROMETHEUS_3})
    assert response.headers["Content-Type"].endswith("escaping=allow-utf-8")
    families = {f.name: f for f in parse_om(await response.text())}
    (sample,) = families["http.server.active"].samples
    assert sample.labels == {"url.path": "/a"}
    assert sample.value == 3.0


async def test_a_dots_scraper_gets_them_escaped_by_dots(
    utf8_target: str, make_rig: MakeRig
) -> None:
    rig = await make_rig([target("app", utf8_target)])
    body = await rig.scrape({"Accept": "text/plain;version=1.0.0;escaping=dots"})
    assert 'http_dot_server_dot_active{url_dot_path="/a"} 3.0' in body


async def test_a_prometheus_2_scraper_gets_underscores(utf8_target: str, make_rig: MakeRig) -> None:
    rig = await make_rig([target("app", utf8_target)])
    body = await rig.scrape({"Accept": "text/plain;version=0.0.4"})
    assert 'http_server_active{url_path="/a"} 3.0' in body
    assert "http.server.active" not in body


async def test_a_utf8_protobuf_scraper_gets_the_utf8_name(
    utf8_target: str, make_rig: MakeRig
) -> None:
    rig = await make_rig([target("app", utf8_target)])
    accept = f"{CONTENT_TYPE};escaping=allow-utf-8;q=0.7,{PROMETHEUS_3}"
    response = await rig.client.get("/metrics", headers={"Accept": accept})
    family = by_name(await response.read())["http.server.active"]
    assert [(p.name, p.value) for p in family.metric[0].label] == [("url.path", "/a")]
