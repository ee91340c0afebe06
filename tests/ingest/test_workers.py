"""Pod-level aggregation across worker processes (``ingest.workers``, issue 20).

Each test pushes what several workers of one pod would (one resource per worker, told
apart by ``service.instance.id`` and ``process.pid``) and reads the exposition text.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from prometheus_client import generate_latest

from sidecar.config import Config, ConfigError, WorkersConfig, load_config
from sidecar.ingest.codec import Encoding
from sidecar.ingest.store import BOUNDS_MISMATCH, OUT_OF_ORDER, STORE_FULL, StoreLimits
from sidecar.reload import changed_keys, running_config
from sidecar.status.inventory import store_sources
from tests.support.otlp import (
    DELTA,
    Harness,
    counter,
    epoint,
    exponential,
    gauge,
    histogram,
    hpoint,
    number,
    request,
    summary,
)

WORKERS = ("service.instance.id", "process.pid")


def harness(gauges: str = "sum", idle: float = 120.0, **limits: Any) -> Harness:
    return Harness(
        StoreLimits(worker_gauges=gauges, worker_idle=idle, **limits),
        target_info=True,
        workers=WORKERS,
    )


def push(
    h: Harness, pid: int, *metrics: pb.Metric, encoding: Encoding | None = None
) -> dict[str, int]:
    """Push as worker ``pid``; returns the store's rejections."""
    resource = {"service.name": "shop", "service.instance.id": f"uuid-{pid}", "process.pid": pid}
    _, outcome = h.push(request(*metrics, resource=resource), encoding)
    return outcome.rejected


def samples(h: Harness, name: str) -> dict[str, str]:
    """``labels → value`` of every sample line of ``name`` (labels as written)."""
    out: dict[str, str] = {}
    for line in h.text().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            out[head[len(name) :]] = value
    return out


def value(h: Harness, name: str) -> float:
    (only,) = samples(h, name).values()
    return float(only)


def requests_total(v: int, *, start: int = 1, time: int = 2) -> pb.Metric:
    return counter("requests", [number(v, start=start, time=time)])


@pytest.mark.parametrize("encoding", [None, Encoding.PROTOBUF, Encoding.JSON])
def test_workers_are_one_series_without_their_attributes(encoding: Encoding | None) -> None:
    h = harness()
    push(h, 101, requests_total(3), encoding=encoding)
    push(h, 102, requests_total(4), encoding=encoding)
    assert samples(h, "requests_total") == {'{service_name="shop"}': "7.0"}
    assert samples(h, "target_info") == {'{service_name="shop"}': "1.0"}


def test_off_by_default_every_worker_is_its_own_series() -> None:
    h = Harness(target_info=True)
    for pid, v in ((101, 3), (102, 4)):
        resource = {
            "service.name": "shop",
            "service.instance.id": f"uuid-{pid}",
            "process.pid": pid,
        }
        h.push(request(requests_total(v), resource=resource))
    assert len(samples(h, "requests_total")) == 2
    assert not h.store.workers


def test_a_restarted_worker_is_folded_in_and_the_counter_never_decreases() -> None:
    h = harness()
    push(h, 101, requests_total(10, start=1, time=2))
    push(h, 102, requests_total(5, start=1, time=2))
    assert value(h, "requests_total") == 15
    # worker 101 restarts in place (same pid): a new start time, counting from 0 again
    push(h, 101, requests_total(2, start=50, time=51))
    assert value(h, "requests_total") == 17
    push(h, 101, requests_total(6, start=50, time=60))
    push(h, 102, requests_total(9, start=1, time=60))
    assert value(h, "requests_total") == 25  # 10 (folded) + 6 + 9


def test_a_counter_going_down_without_a_new_start_is_a_reset_too() -> None:
    h = harness()
    push(h, 101, requests_total(10, time=2))
    push(h, 101, requests_total(4, time=3))
    assert value(h, "requests_total") == 14


def test_recycled_workers_retire_and_their_last_value_stays() -> None:
    h = harness(idle=30.0)
    push(h, 101, requests_total(10))
    push(h, 102, requests_total(20))
    h.now = 20.0
    push(h, 102, requests_total(25, time=3))
    push(h, 103, requests_total(1))  # 101 exited after its last push; 103 replaces it
    h.now = 40.0  # 101 silent for 40 s > 30 s
    assert h.store.expire() == 0  # retiring a worker expires no series
    assert h.retired == 1
    assert sorted(w for _, w in h.store.workers) == ["uuid-102/102", "uuid-103/103"]
    assert h.store.streams == 2
    assert value(h, "requests_total") == 36  # 10 + 25 + 1
    h.now = 100.0
    h.store.expire()
    assert h.retired == 3
    assert not h.store.workers
    assert h.store.streams == 0
    assert value(h, "requests_total") == 36  # nothing per worker left, the total stays


def test_delta_temporality_sums_naturally() -> None:
    h = harness()
    for pid, (start, at, v) in [(101, (1, 2, 3)), (102, (1, 2, 4)), (101, (2, 3, 5))]:
        push(h, pid, counter("requests", [number(v, start=start, time=at)], temporality=DELTA))
    assert value(h, "requests_total") == 12


def test_a_stale_point_of_one_worker_is_refused_not_another_workers() -> None:
    h = harness()
    push(h, 101, requests_total(10, time=5))
    assert push(h, 102, requests_total(1, time=2)) == {}  # its own clock: fine
    assert push(h, 101, requests_total(11, time=4)) == {OUT_OF_ORDER: 1}
    assert value(h, "requests_total") == 11


def test_up_down_counters_sum_and_may_go_down() -> None:
    h = harness()
    updown = lambda v, t: counter("queue", [number(v, time=t)], monotonic=False)  # noqa: E731
    push(h, 101, updown(5, 2))
    push(h, 102, updown(3, 2))
    push(h, 101, updown(1, 3))
    assert value(h, "queue") == 4


@pytest.mark.parametrize(
    ("mode", "expected", "after_retiring_102"),
    [
        ("sum", {'{service_name="shop"}': "9.0"}, {'{service_name="shop"}': "2.0"}),
        ("max", {'{service_name="shop"}': "7.0"}, {'{service_name="shop"}': "2.0"}),
        ("min", {'{service_name="shop"}': "2.0"}, {'{service_name="shop"}': "2.0"}),
        ("last", {'{service_name="shop"}': "7.0"}, {'{service_name="shop"}': "2.0"}),
        (
            "each",
            {
                '{service_name="shop",worker="uuid-101/101"}': "2.0",
                '{service_name="shop",worker="uuid-102/102"}': "7.0",
            },
            {'{service_name="shop",worker="uuid-101/101"}': "2.0"},
        ),
    ],
)
def test_gauges_combine_as_configured(
    mode: str, expected: dict[str, str], after_retiring_102: dict[str, str]
) -> None:
    h = harness(gauges=mode, idle=30.0)
    push(h, 101, gauge("memory", [number(2, time=2)]))
    push(h, 102, gauge("memory", [number(7, time=3)]))
    assert samples(h, "memory") == expected
    h.now = 20.0
    push(h, 101, gauge("memory", [number(2, time=4)]))
    h.now = 40.0
    h.store.expire()
    assert samples(h, "memory") == after_retiring_102
    h.now = 80.0
    h.store.expire()
    assert samples(h, "memory") == {}  # no live worker reports it: the gauge goes


def test_cumulative_histograms_sum_bucket_by_bucket_across_restarts() -> None:
    h = harness()
    bounds = (1.0, 5.0)
    push(h, 101, histogram("latency", [hpoint(bounds, (1, 2, 0), 6.0, time=2)]))
    push(h, 102, histogram("latency", [hpoint(bounds, (0, 1, 1), 9.0, time=2)]))
    push(h, 101, histogram("latency", [hpoint(bounds, (1, 0, 0), 0.5, start=10, time=11)]))
    got = samples(h, "latency_bucket")
    assert got == {
        '{le="1.0",service_name="shop"}': "2.0",  # 1 + 0 + 1 (per bucket, not cumulative)
        '{le="5.0",service_name="shop"}': "5.0",  # + 2 + 1 + 0
        '{le="+Inf",service_name="shop"}': "6.0",  # + 0 + 1 + 0
    }
    assert value(h, "latency_sum") == 15.5


def test_exponential_histograms_of_different_scales_merge_at_the_coarser() -> None:
    h = harness()
    # worker 101 at scale 1: bucket 4 is (2**2, 2**2.5]; worker 102 at scale 0: bucket 2 (2, 4]
    push(h, 101, exponential("size", [epoint(1, (4, [3]), total=15.0)]))
    push(h, 102, exponential("size", [epoint(0, (2, [2]), total=7.0)]))
    family = h.store.families["size"]
    (series,) = family.series.values()
    state = series.extra
    assert state is not None
    assert not isinstance(state, tuple)
    assert state.scale == 0
    assert state.positive == {2: 5}  # 3 at index 4>>1 = 2, plus 2
    assert state.count == 5
    assert state.sum == 22.0


def test_summaries_sum_count_and_sum_and_keep_the_latest_quantiles() -> None:
    h = harness()
    push(h, 101, summary("rpc", [(0.5, 1.0)], 10.0, 4, time=2))
    push(h, 102, summary("rpc", [(0.5, 3.0)], 5.0, 1, time=3))
    push(h, 101, summary("rpc", [(0.5, 2.0)], 12.0, 6, time=4))
    assert value(h, "rpc_count") == 7
    assert value(h, "rpc_sum") == 17.0
    assert samples(h, "rpc") == {'{quantile="0.5",service_name="shop"}': "2.0"}


def test_live_worker_streams_are_bounded_by_max_series() -> None:
    h = harness(max_series=2)
    assert push(h, 101, requests_total(1)) == {}
    assert push(h, 102, requests_total(1)) == {}
    # two live streams (of one series): a third worker's stream finds no room
    assert push(h, 103, requests_total(1)) == {STORE_FULL: 1}
    assert value(h, "requests_total") == 2
    assert h.store.streams == 2


def test_the_status_page_lists_the_workers_behind_a_source() -> None:
    h = harness()
    push(h, 101, requests_total(1))
    push(h, 102, requests_total(1))
    (source,) = store_sources(h.store)
    assert (source.service_name, source.service_instance_id) == ("shop", "")
    assert source.workers == ("uuid-101/101", "uuid-102/102")
    assert source.series == 1


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("ingest: {workers: {gauges: avg}}", "ingest.workers.gauges"),
        ("ingest: {workers: {attributes: process.pid}}", "ingest.workers.attributes"),
        ("ingest: {workers: {attributes: [a, a]}}", "ingest.workers.attributes"),
        ("ingest: {workers: {idle: 0}}", "ingest.workers.idle"),
        ("ingest: {workers: {pid: true}}", "ingest.workers.pid"),
    ],
)
def test_bad_workers_config_names_the_key(tmp_path, yaml_text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key


def test_a_reload_leaves_ingest_workers_waiting_for_a_restart() -> None:
    old = Config()
    new = dataclasses.replace(
        old,
        ingest=dataclasses.replace(
            old.ingest, workers=WorkersConfig(attributes=("process.pid",), idle=30.0)
        ),
    )
    running = running_config(old, new)
    assert running.ingest.workers == old.ingest.workers  # the store keeps its settings
    assert changed_keys(old, running) == []
    assert changed_keys(running, new) == ["ingest.workers.attributes", "ingest.workers.idle"]


async def test_workers_are_counted_in_the_self_metrics(ingest_factory) -> None:  # type: ignore[no-untyped-def]
    ingest = await ingest_factory(workers=WorkersConfig(attributes=("process.pid",), idle=1.0))
    for pid in (101, 102):
        body = request(requests_total(1), resource={"service.name": "shop", "process.pid": pid})
        response = await ingest.client.post(
            "/v1/metrics",
            data=body.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status == 200
    text = generate_latest(ingest.module.registry).decode()
    assert re.search(r"^sidecar_ingest_workers\{[^}]*\} 2\.0$", text, re.M), text
    ingest.state.store.expire(time.monotonic() + 2)
    text = generate_latest(ingest.module.registry).decode()
    assert re.search(r"^sidecar_ingest_workers\{[^}]*\} 0\.0$", text, re.M), text
    assert re.search(r"^sidecar_ingest_workers_retired_total\{[^}]*\} 2\.0$", text, re.M), text


def test_explicit_and_exponential_buckets_of_one_series_are_refused() -> None:
    h = harness()
    push(h, 101, histogram("size", [hpoint((1.0,), (1, 0), 0.5)]))
    refused = push(h, 102, exponential("size", [epoint(0, (0, [1]), total=1.0)]))
    assert refused == {BOUNDS_MISMATCH: 1}
    assert samples(h, "size_count") == {'{service_name="shop"}': "1.0"}


def test_a_workers_streams_beyond_the_per_metric_limit_fold_into_the_overflow() -> None:
    h = harness(idle=30.0, max_series_per_metric=1)

    def two(v: int, t: int) -> pb.Metric:
        return counter("requests", [number(v, {"a": 1}, time=t), number(v, {"a": 2}, time=t)])

    push(h, 101, two(5, 2))
    push(h, 102, two(3, 2))
    push(h, 101, two(7, 3))
    assert samples(h, "requests_total") == {
        '{a="1",service_name="shop"}': "10.0",
        '{otel_metric_overflow="true"}': "10.0",
    }
    assert len(h.store.families["requests"].overflowed) == 2  # one stream per worker
    h.now = 40.0
    h.store.expire()
    assert h.retired == 2
    assert h.store.families["requests"].overflowed == {}  # nothing kept per retired worker
