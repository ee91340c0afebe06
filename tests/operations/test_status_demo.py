"""The status page of a real ``causality-sidecar demo`` process, in headless Chromium.

Needs the page wired into `sidecar.server.Sidecar.build` (``add_status_routes``); the
sidecar samples every 5 s, so the test waits for two samples with demo traffic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sidecar.demo.pipeline import PIPELINE_SERVICE
from tests.support import browser
from tests.support.process import SidecarProcess, http_get
from tests.support.prometheus import poll

pytestmark = pytest.mark.slow

ROUTE_ROW = re.compile(r"<code>(/[^<]*)</code>")


def _page_with_routes(demo: SidecarProcess) -> str | None:
    status, _, body = http_get(demo.url("/"))
    assert status == 200, f"GET / answered {status}: is the status page wired in?"
    page = body.decode()
    return page if len(ROUTE_ROW.findall(page)) >= 3 and PIPELINE_SERVICE in page else None


async def test_demo_status_page_in_chromium(
    demo: SidecarProcess, tmp_path: Path, record_property: Any
) -> None:
    page = poll(
        lambda: _page_with_routes(demo), 40, lambda: "three routes and the pipeline on the page"
    )
    assert "/users/{id}" in ROUTE_ROW.findall(page)
    dom = await browser.dump_dom(demo.url("/"))
    assert 'id="traffic"' in dom
    assert 'id="ingest"' in dom
    assert f"<td>{PIPELINE_SERVICE}</td>" in dom  # the demo pipeline as an OTLP source
    assert dom.count('<svg class="spark rate"') >= 3
    shot = await browser.screenshot(demo.url("/?refresh=0"), tmp_path / "status-page.png")
    print(f"status page screenshot of causality-sidecar demo: {shot}")
    record_property("screenshot", str(shot))
    assert shot.stat().st_size > 10_000
