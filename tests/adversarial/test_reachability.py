"""Case 13: who can reach what, with the defaults; /metrics' bearer token in constant time.

1. The real process started with no listen flags in its own network namespace (so the
   fixed default ports collide with nothing): the ingest port is bound to loopback only
   (127.0.0.1 and ::1), whatever else listens on all interfaces.
2. With ``admin.bearer_token_file``: a missing, wrong (same length), wrong-length, or
   non-Bearer token is 401, and the time to that 401 does not tell them apart. Timings
   over loopback, interleaved in a shuffled order each round so drift hits every class alike, compared with
   a Mann-Whitney U test; a positive control (the right token, which renders /metrics)
   proves the same measurement does see a real difference.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from sidecar.admin import Readiness, create_admin_app
from sidecar.config import AdminConfig, Config

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-" + "x" * 25  # 32 bytes
SAMPLES = 250  # per class; about 1,250 requests in all


@pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="needs root for a network namespace",
)
def test_default_ingest_listener_is_loopback_only() -> None:
    assert shutil.which("unshare"), "util-linux unshare is needed"
    assert shutil.which("ip"), "iproute2 ip is needed"
    result = subprocess.run(
        ["unshare", "--net", sys.executable, str(ROOT / "tests/adversarial/netns_probe.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    listeners = [(host, port) for host, port in json.loads(result.stdout)]
    ingest = [host for host, port in listeners if port == Config().ingest.listen.port]
    assert ingest, listeners
    assert all(ipaddress.ip_address(h).is_loopback for h in ingest), listeners
    assert "127.0.0.1" in ingest


def test_defaults_say_loopback_for_ingest() -> None:
    assert Config().ingest.listen.is_loopback
    assert Config().admin.bearer_token_file is None  # documented in SECURITY.md: open by default


def _mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    i = 0
    ties = 0.0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        ties += (j - i + 1) ** 3 - (j - i + 1)
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_, g) in zip(ranks, ranked, strict=True) if g == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u - n1 * n2 / 2) / sigma
    return math.erfc(abs(z) / math.sqrt(2))


CLASSES = {
    "right-length-wrong": {"Authorization": "Bearer " + "y" * len(TOKEN)},
    "missing": {},
    "short-wrong": {"Authorization": "Bearer nope"},
    "long-wrong": {"Authorization": "Bearer " + "z" * (len(TOKEN) + 16)},
    "basic-scheme": {"Authorization": "Basic " + TOKEN},
    "prefix-right": {"Authorization": "Bearer " + TOKEN[:-1] + "?"},
}


@pytest.mark.serial  # a timing comparison: nothing else may run beside it
async def test_bearer_token_refusals_take_the_same_time(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    registry = CollectorRegistry()  # a real, small /metrics for the positive control
    app = create_admin_app(AdminConfig(bearer_token_file=str(token_file)), registry, Readiness())
    async with TestClient(TestServer(app)) as client:
        timings: dict[str, list[float]] = {name: [] for name in [*CLASSES, "right"]}
        headers = {**CLASSES, "right": {"Authorization": "Bearer " + TOKEN}}
        for _ in range(10):  # warm-up
            for h in headers.values():
                await (await client.get("/metrics", headers=h)).read()
        order = list(headers)
        shuffle = random.Random(7).shuffle  # a fixed seed: the same test every run
        for _ in range(SAMPLES):
            shuffle(order)  # no class always runs first (the first of a round is slower)
            for name in order:
                h = headers[name]
                started = time.perf_counter_ns()
                response = await client.get("/metrics", headers=h)
                await response.read()
                timings[name].append(time.perf_counter_ns() - started)
                assert response.status == (200 if name == "right" else 401), name
    base = timings["right-length-wrong"]
    report = {
        n: (statistics.median(t) / 1000, _mann_whitney_p(base, t)) for n, t in timings.items()
    }
    print({n: f"median {m:.0f}us p={p:.3g}" for n, (m, p) in report.items()})
    for name in CLASSES:
        median, p = report[name]
        # indistinguishable: no significant shift, and medians within 15% (loopback noise)
        assert p > 1e-4 or abs(median / report["right-length-wrong"][0] - 1) < 0.15, (name, report)
    # the positive control: rendering /metrics is a real difference and the test sees it
    assert report["right"][1] < 1e-4, report
