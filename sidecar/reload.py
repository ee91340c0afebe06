"""What a SIGHUP reload applies, and what waits for a restart (pure rules).

A reload applies every key that needs no new socket, upstream pool, store or metrics
pipeline: the proxy's routing and per-request limits, ``events``, ``merge``, ``export``,
``logging``, ``shutdown`` and ``relabel``. Every other key (listen addresses, timeouts
and pool of the upstream, the ingest store's limits and ``ingest.workers``, ``admin``,
``service``, histogram buckets) keeps its running value until the process restarts.
`running_config` is the config in effect after a reload; `changed_keys` names what
differs, as key paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sidecar.config import Config, to_dict

__all__ = ["RELOADABLE_PROXY_KEYS", "RELOADABLE_SECTIONS", "changed_keys", "running_config"]

# proxy.* keys read per request (one reference swapped: sidecar.proxy.server.ProxyHandler)
RELOADABLE_PROXY_KEYS = (
    "routes",
    "unmatched_routes",
    "max_route_labels",
    "max_in_flight",
    "max_request_body",
    "forwarded_headers",
)
# whole sections rebuilt or re-read on reload
RELOADABLE_SECTIONS = ("events", "merge", "export", "logging", "shutdown", "relabel")


def running_config(old: Config, new: Config) -> Config:
    """The config in effect after reloading ``new`` over the running ``old``."""
    proxy = dataclasses.replace(
        old.proxy, **{key: getattr(new.proxy, key) for key in RELOADABLE_PROXY_KEYS}
    )
    sections = {name: getattr(new, name) for name in RELOADABLE_SECTIONS}
    return dataclasses.replace(old, proxy=proxy, **sections)


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value and path != "export.otlp.headers":
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def changed_keys(before: Config, after: Config) -> list[str]:
    """The key paths whose values differ, in config order (lists and header maps whole:
    ``merge.targets``, ``export.otlp.headers``)."""
    a = _flatten(to_dict(before, redact=False))
    b = _flatten(to_dict(after, redact=False))
    return [key for key in {**a, **b} if a.get(key) != b.get(key)]
