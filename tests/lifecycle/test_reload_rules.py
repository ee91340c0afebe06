"""The reload rule of `sidecar.reload`: which changed keys SIGHUP applies, which wait."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.config import Config, config_from_dict
from sidecar.demo.samples import batch_body
from sidecar.reload import changed_keys, running_config


@pytest.mark.parametrize(
    ("change", "applied", "waiting"),
    [({}, [], []),
     ({"proxy": {"routes": ["/a/{id}"], "max_route_labels": 5}}, ["proxy.routes", "proxy.max_route_labels"], []),
     ({"proxy": {"max_in_flight": 5, "max_request_body": "1MiB", "forwarded_headers": False,
                 "unmatched_routes": "other"}},
      ["proxy.max_in_flight", "proxy.max_request_body", "proxy.forwarded_headers",
       "proxy.unmatched_routes"], []),
     ({"proxy": {"listen": "127.0.0.1:1", "upstream": "http://127.0.0.1:2",
                 "connect_timeout": "1s", "max_header_bytes": "1KiB", "latency_buckets_ms": [1]}},
      [], ["proxy.listen", "proxy.upstream", "proxy.connect_timeout", "proxy.max_header_bytes",
           "proxy.latency_buckets_ms"]),
     ({"events": {"enabled": True, "dedup_window": "1m"}}, ["events.enabled", "events.dedup_window"], []),
     ({"merge": {"targets": [{"name": "a", "url": "http://127.0.0.1:1/metrics"}]}}, ["merge.targets"], []),
     ({"export": {"otlp": {"endpoint": "http://c:4318", "headers": {"k": "v"}}}},
      ["export.otlp.endpoint", "export.otlp.headers"], []),
     ({"logging": {"level": "debug", "format": "text"}}, ["logging.level", "logging.format"], []),
     ({"shutdown": {"drain_delay": "1s"}}, ["shutdown.drain_delay"], []),
     ({"admin": {"listen": "127.0.0.1:3", "metrics_path": "/m"}, "service": {"name": "x"},
       "ingest": {"max_series": 5, "enabled": False}},
      [], ["service.name", "admin.listen", "admin.metrics_path", "ingest.enabled", "ingest.max_series"])],
    ids=["nothing", "routes", "per-request-limits", "listener-and-pool", "events", "merge",
         "export", "logging", "shutdown", "admin-service-ingest"],
)  # fmt: skip
def test_what_a_reload_applies(
    change: dict[str, Any], applied: list[str], waiting: list[str]
) -> None:
    old = Config()
    new = config_from_dict(change)
    running = running_config(old, new)
    assert changed_keys(old, running) == applied
    assert changed_keys(running, new) == waiting
    # what waits keeps its running value; a second reload of the same file changes nothing
    assert changed_keys(running, running_config(running, new)) == []


def test_waiting_keys_stay_listed_until_a_restart() -> None:
    first = running_config(Config(), config_from_dict({"proxy": {"connect_timeout": "1s"}}))
    second_file = config_from_dict({"proxy": {"connect_timeout": "1s", "routes": ["/x"]}})
    second = running_config(first, second_file)
    assert changed_keys(first, second) == ["proxy.routes"]
    assert changed_keys(second, second_file) == ["proxy.connect_timeout"]


def test_inspector_reconfigure_keeps_or_replaces_the_dedup_memory() -> None:
    """Paths and limits apply at once; the key memory is replaced (empty) only when its
    own settings change, and the counts carry on either way."""
    from sidecar.config import EventsConfig
    from sidecar.demo.samples import envelope
    from tests.support.events import make_harness

    harness = make_harness(EventsConfig(enabled=True))
    h = next(harness)
    event = envelope("screen_view", idempotency_key="key-1")
    h.batch([event])
    h.batch([event])
    assert h.value("causality_events_duplicate_total", type="screen_view") == 1

    moved = EventsConfig(enabled=True, batch_path="/v2/batch")
    assert h.inspector.reconfigure(moved) is False  # same dedup settings: memory kept
    assert h.inspector.wants_request("POST", "/v2/batch")
    assert not h.inspector.wants_request("POST", "/v1/events/batch")
    h.inspector.inspect_request("/v2/batch", "application/json", batch_body([event]))
    assert h.value("causality_events_duplicate_total", type="screen_view") == 2

    shorter = EventsConfig(enabled=True, batch_path="/v2/batch", dedup_window=60.0)
    assert h.inspector.reconfigure(shorter) is True  # a new, empty memory
    h.inspector.inspect_request("/v2/batch", "application/json", batch_body([event]))
    assert h.value("causality_events_duplicate_total", type="screen_view") == 2
    assert h.value("causality_events_total", type="screen_view") == 4
    assert next(harness, None) is None  # the harness shuts its provider down
