"""The admin listener: /metrics negotiation, promtool, gzip, bearer token, probes."""

from __future__ import annotations

import gzip
import platform
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sidecar import __version__, extensions
from sidecar.admin import create_admin_app
from sidecar.config import AdminConfig, Config, ConfigError
from sidecar.server import Sidecar
from tests.support.observability import record_everything
from tests.support.prometheus import check_metrics

TEXT_CT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
PROMETHEUS_ACCEPT = (  # what Prometheus 2.x sends
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
async def sidecar() -> AsyncIterator[Sidecar]:
    car = Sidecar(Config())
    record_everything(car.metrics)
    car.readiness.set_ready()
    yield car
    await car.module.shutdown()


async def admin_client(
    aiohttp_client: AiohttpClient, sidecar: Sidecar, config: AdminConfig | None = None
) -> TestClient[web.Request, web.Application]:
    app = create_admin_app(config or AdminConfig(), sidecar.collector(), sidecar.readiness)
    return await aiohttp_client(app)


async def test_text_format_by_default(aiohttp_client: AiohttpClient, sidecar: Sidecar) -> None:
    client = await admin_client(aiohttp_client, sidecar)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == TEXT_CT
    text = await response.text()
    names = {f.name for f in parse_text(text)}
    assert {
        "http_request_duration_milliseconds",
        "process_cpu_seconds",
        "sidecar_build_info",
    } <= names
    python, path = platform.python_version(), extensions.label()
    assert (
        f'sidecar_build_info{{extensions="{path}",python="{python}",version="{__version__}"}} 1.0'
        in text
    )


async def test_text_passes_promtool(aiohttp_client: AiohttpClient, sidecar: Sidecar) -> None:
    client = await admin_client(aiohttp_client, sidecar)
    check = check_metrics(await (await client.get("/metrics")).text())
    assert check.passes, check.findings


@pytest.mark.parametrize(
    "accept", [OPENMETRICS_ACCEPT, PROMETHEUS_ACCEPT], ids=["om", "prometheus"]
)
async def test_openmetrics_when_asked(
    aiohttp_client: AiohttpClient, sidecar: Sidecar, accept: str
) -> None:
    client = await admin_client(aiohttp_client, sidecar)
    response = await client.get("/metrics", headers={"Accept": accept})
    assert response.headers["Content-Type"].startswith(
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )
    text = await response.text()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["http_request"].type == "counter"
    assert families["dlq_depth"].type == "gauge"


async def test_gzip_round_trips(aiohttp_client: AiohttpClient, sidecar: Sidecar) -> None:
    client = await admin_client(aiohttp_client, sidecar)
    plain = await (await client.get("/metrics", headers={"Accept-Encoding": "identity"})).read()
    response = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert response.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(await response.read()).decode()
    # process_* values move between scrapes: compare the families, not the bytes
    assert [f.name for f in parse_text(body)] == [f.name for f in parse_text(plain.decode())]


async def test_probes(aiohttp_client: AiohttpClient, sidecar: Sidecar) -> None:
    client = await admin_client(aiohttp_client, sidecar)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    sidecar.readiness.set_not_ready("draining")
    response = await client.get("/readyz")
    assert response.status == 503
    assert "draining" in await response.text()
    assert (await client.get("/healthz")).status == 200


async def test_custom_metrics_path(aiohttp_client: AiohttpClient, sidecar: Sidecar) -> None:
    client = await admin_client(aiohttp_client, sidecar, AdminConfig(metrics_path="/prom"))
    assert (await client.get("/prom")).status == 200
    assert (await client.get("/metrics")).status == 404


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong", 401), ("Basic s3cr3t-token", 401), ("Bearer s3cr3t-token-x", 401),
     ("Bearer s3cr3t-token", 200), ("bearer s3cr3t-token", 200)],
    ids=["missing", "wrong", "not-bearer", "longer", "right", "scheme-case"],
)  # fmt: skip
async def test_bearer_token(
    aiohttp_client: AiohttpClient, sidecar: Sidecar, tmp_path: Path, authorization: str | None,
    status: int,
) -> None:  # fmt: skip
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-token\n")
    config = AdminConfig(bearer_token_file=str(token_file))
    client = await admin_client(aiohttp_client, sidecar, config)
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status == status
    body = await response.text()
    assert "s3cr3t" not in body
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # probes never need the token
    assert (await client.get("/healthz")).status == 200


def test_unreadable_token_file_is_a_config_error(tmp_path: Path, sidecar: Sidecar) -> None:
    config = AdminConfig(bearer_token_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"^admin\.bearer_token_file: cannot read"):
        create_admin_app(config, sidecar.collector(), sidecar.readiness)
