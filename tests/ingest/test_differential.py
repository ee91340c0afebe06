"""Differential acceptance test (issue 4): OTLP ingest vs the in-process Prometheus exporter.

The same instruments and measurements (`tests.support.workload`) are recorded (a) in this
process with the SDK and ``PrometheusMetricReader`` and (b) in a subprocess with the SDK
and pushed over OTLP/HTTP (protobuf via ``OTLPMetricExporter``; JSON via the SDK's
encoder), gzip on and off, to a running ingest listener on loopback. /metrics must show
the same families, types, HELP, label names and values, bucket bounds and counts — apart
from the promoted resource labels and ``target_info``. Empty label values are dropped on
both sides before comparing: the exporter pads missing labels with ``""``, which
Prometheus treats as absent, and the sidecar leaves them out.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.config import Address
from sidecar.ingest import create_ingest
from sidecar.observability import Module
from sidecar.unified import UnifiedCollector
from tests.support import workload
from tests.support.ingest import make_config

ROOT = Path(__file__).resolve().parents[2]
PROMOTED = {"service_name", "service_namespace", "service_instance_id"}

Families = dict[str, tuple[str, str, frozenset[tuple[str, frozenset[tuple[str, str]], float]]]]


def _families(text: str, drop_labels: set[str]) -> Families:
    out: Families = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("target", "target_info"):
            continue
        samples = frozenset(
            (
                s.name,
                frozenset((k, v) for k, v in s.labels.items() if v and k not in drop_labels),
                s.value,
            )
            for s in family.samples
        )
        out[family.name] = (family.type, family.documentation, samples)
    return out


def _in_process() -> str:
    registry = CollectorRegistry()
    provider = MeterProvider(
        resource=Resource.create(workload.RESOURCE),
        metric_readers=[PrometheusMetricReader(registry=registry)],
    )
    workload.record(provider.get_meter("diff.scope", "3.1"))
    text = generate_latest(registry).decode()
    provider.shutdown()
    return text


async def _push(endpoint: str, encoding: str, compression: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.workload", endpoint, encoding, compression,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_same_exposition_as_the_in_process_exporter(encoding, compression):
    module = Module.new("differential")
    config = make_config(listen=Address("127.0.0.1", 0))
    component, collector = create_ingest(config, module)
    await component.start()
    try:
        (port,) = {a.port for a in component.addresses if a.host == "127.0.0.1"}
        await _push(f"http://127.0.0.1:{port}", encoding, compression)
        ingested = UnifiedCollector([collector]).render("", "").body.decode()
    finally:
        await component.stop(1.0)
        await module.shutdown()
    expected = _families(_in_process(), set())
    actual = _families(ingested, PROMOTED)
    assert len(expected) >= 13
    assert sorted(actual) == sorted(expected)
    for name, family in expected.items():
        assert actual[name] == family, name
    # the promoted resource labels and target_info are there too
    assert 'service_name="diff-app"' in ingested
    assert 'service_namespace="tests"' in ingested
    assert 'target_info{deployment_environment="ci"' in ingested


def test_the_workload_covers_the_issue_list():
    text = _in_process()
    for needle in [
        "# TYPE orders_placed_total counter",
        "# TYPE queue_depth gauge",
        'http_server_duration_milliseconds_bucket{le="5000.0"',
        'payload_size_bytes_bucket{kind="upload",le="1000.0"',
        "# TYPE job_wait_seconds histogram",
        "# TYPE cpu_temperature_celsius gauge",
        "# TYPE page_faults_total counter",
        "# TYPE threads_active gauge",
        "# TYPE my_app_cat_count_total counter",
        "# TYPE disk_io_ops_total counter",
        '_digit="x"',
        '_n_="ü"',
        'tags="[\\"a\\", \\"b\\"]"',
        'ok="true"',
        "# TYPE bytes_sent_bytes_total counter",
    ]:
        assert needle in text, needle
