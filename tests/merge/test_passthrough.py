"""A merged answer that ends with a gzipped target's body, unchanged, reuses its compression.

`sidecar.unified` compares the answer's last part with the body the target sent, byte for
byte, and only then sends the target's own deflate blocks after ours (`sidecar.gzipjoin`).
These tests look at the compressed bytes on the wire: the target's blocks are there when
nothing changed and absent when anything did, and the answer inflates to the same valid
exposition either way; a real Prometheus reads a joined answer.
"""

from __future__ import annotations

import gzip
import zlib

import pytest
from aiohttp import ClientResponse, web
from aiohttp.pytest_plugin import AiohttpServer
from prometheus_client import Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.exposition import generate_latest as render_text
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from tests.support.merge import (
    OPENMETRICS_CT,
    TEXT_CT,
    MakeRig,
    Rig,
    StartTarget,
    Target,
    target,
    value,
)
from tests.support.passthrough import app_registry, blocks
from tests.support.prometheus import check_metrics, prometheus_factory, static_scrape_config  # noqa: F401

OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
TEXT_ACCEPT = "text/plain;version=0.0.4"


async def scrape_raw(rig: Rig, accept: str) -> tuple[ClientResponse, bytes]:
    """A gzip scrape, and the compressed bytes as they came."""
    headers = {"Accept": accept, "Accept-Encoding": "gzip"}
    response = await rig.client.get("/metrics", headers=headers, auto_decompress=False)
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    return response, await response.read()


def inflated(raw: bytes) -> bytes:
    """One gzip member, inflated by zlib; nothing may follow it."""
    inflater = zlib.decompressobj(31)
    plain = inflater.decompress(raw)
    assert inflater.eof
    assert inflater.unused_data == b""
    return plain


@pytest.mark.parametrize(
    ("accept", "content_type", "render"),
    [(OPENMETRICS_ACCEPT, OPENMETRICS_CT, render_openmetrics), (TEXT_ACCEPT, TEXT_CT, render_text)],
    ids=["openmetrics", "text"],
)
async def test_an_unchanged_target_goes_out_in_its_own_compression(
    start_target: StartTarget, make_rig: MakeRig, accept: str, content_type: str, render: object
) -> None:
    body = render(app_registry())  # type: ignore[operator]
    url = await start_target(Target(body, content_type, gzip_when_asked=True))
    rig = await make_rig([target("app", url)])
    _, raw = await scrape_raw(rig, accept)
    assert blocks(body) in raw  # passed on, not compressed again
    plain = inflated(raw)
    assert plain.endswith(body)  # the sidecar's own families first, then the app's as sent
    text = plain.decode()
    if content_type == OPENMETRICS_CT:
        assert text.count("# EOF") == 1
        assert {f.name for f in parse_om(text)} >= {"app_requests", "app_latency_seconds"}
        text = render_text_of(text)
    assert check_metrics(text).passes  # promtool reads text 0.0.4
    assert value(text, "app_inflight", route="/r/10") == 3


def render_text_of(openmetrics: str) -> str:
    """An OpenMetrics exposition as text 0.0.4 (for `value` and promtool)."""

    class Parsed:  # prometheus_client's encoders take anything with collect()
        def collect(self) -> object:
            return parse_om(openmetrics)

    return render_text(Parsed()).decode()  # type: ignore[arg-type]


@pytest.mark.parametrize("accept", [OPENMETRICS_ACCEPT, TEXT_ACCEPT], ids=["openmetrics", "text"])
async def test_a_negotiating_app_is_passed_on_in_either_format(
    aiohttp_server: AiohttpServer, make_rig: MakeRig, accept: str
) -> None:
    # a prometheus_client app: the format by its choose_encoder, gzip when asked
    registry = app_registry()
    sent: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        sent.append(encoder(registry))
        return web.Response(
            body=gzip.compress(sent[-1]),
            headers={"Content-Type": content_type, "Content-Encoding": "gzip"},
        )

    app = web.Application()
    app.router.add_get("/metrics", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    rig = await make_rig([target("app", str(server.make_url("/metrics")))])
    response, raw = await scrape_raw(rig, accept)
    assert blocks(sent[-1]) in raw
    assert inflated(raw).endswith(sent[-1])
    wanted = "application/openmetrics-text" if accept == OPENMETRICS_ACCEPT else "text/plain"
    assert response.headers["Content-Type"].startswith(wanted)


CHANGED = {
    "configured-labels": ({"source": "app"}, OPENMETRICS_ACCEPT, None),
    "text-asked-of-openmetrics": ({}, TEXT_ACCEPT, None),
    "a-family-merged-with-the-sidecar's": ({}, OPENMETRICS_ACCEPT, "app_inflight"),
}


@pytest.mark.parametrize(("labels", "accept", "owned"), CHANGED.values(), ids=CHANGED)
async def test_a_changed_target_is_compressed_afresh(
    start_target: StartTarget,
    make_rig: MakeRig,
    labels: dict[str, str],
    accept: str,
    owned: str | None,
) -> None:
    body = render_openmetrics(app_registry())
    url = await start_target(Target(body, OPENMETRICS_CT, gzip_when_asked=True))
    rig = await make_rig([target("app", url, **labels)])
    if owned:  # a series of the sidecar's own in the app's family: the family is merged
        Gauge(owned, "Mine", ["route"], registry=rig.module.registry).labels("/mine").set(1)
    _, raw = await scrape_raw(rig, accept)
    assert blocks(body) not in raw
    text = inflated(raw).decode()
    text = text if accept == TEXT_ACCEPT else render_text_of(text)  # parses OpenMetrics
    assert check_metrics(text).passes
    assert value(text, "app_inflight", route="/r/10", **labels) == 3
    if owned:
        assert value(text, "app_inflight", route="/mine") == 1


async def test_prometheus_reads_a_joined_answer(
    start_target: StartTarget,
    make_rig: MakeRig,
    prometheus_factory,  # noqa: F811
) -> None:
    body = render_openmetrics(app_registry())
    url = await start_target(Target(body, OPENMETRICS_CT, gzip_when_asked=True))
    rig = await make_rig([target("app", url)])
    _, raw = await scrape_raw(rig, OPENMETRICS_ACCEPT)
    assert blocks(body) in raw  # what Prometheus gets is a joined answer
    server = rig.client.server
    prom = prometheus_factory([static_scrape_config("sidecar", f"{server.host}:{server.port}")])
    targets = await prom.await_targets_up()
    assert targets[0]["lastError"] == ""
    assert (await prom.await_result('app_requests_total{route="/r/299"}')).values() == [299.0]
    assert (await prom.await_result("app_latency_seconds_count")).values() == [1.0]
    assert (await prom.await_result("count(app_inflight)")).values() == [300.0]
    assert not (await prom.await_result("sidecar_merge_scrapes_total")).is_empty
