"""TLS to an ``https://`` upstream, against a real TLS server: nginx on loopback.

Before this, ``proxy.upstream: https://...`` was spoken to in plain HTTP: nginx answered
its 400 "plain HTTP request was sent to HTTPS port", which the proxy relayed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.config import ProxyConfig, UpstreamTlsConfig
from sidecar.proxy.upstream import Upstream
from tests.support.process import http_get, local_ports, run_sidecar, wait_until
from tests.support.proxy import ProxyFactory, blob, upstream_app
from tests.support.tls_upstream import SERVER_NAME, TlsUpstream, running_nginx

STATIC = blob(3 * 2**20 + 17, seed=7)  # served by nginx itself, over TLS


@pytest.fixture
async def tls(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[TlsUpstream]:
    """nginx terminating TLS in front of the tests' aiohttp upstream app."""
    app = await aiohttp_server(upstream_app())
    with running_nginx(tmp_path, app.port, STATIC) as upstream:
        yield upstream


def _trusting(tls: TlsUpstream, **options: Any) -> UpstreamTlsConfig:
    return UpstreamTlsConfig(ca_file=str(tls.certificates.ca), **options)


def _upstream_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "sidecar.proxy.upstream" and r.levelno == logging.WARNING
    ]


async def test_verified_with_ca_file_and_server_name(
    make_proxy: ProxyFactory, tls: TlsUpstream
) -> None:
    tls_options = _trusting(tls, server_name=SERVER_NAME)
    p = await make_proxy(upstream=tls.https_url, upstream_tls=tls_options)
    async with p.session.get(p.url + "/static") as r:
        assert r.status == 200
        assert r.headers["X-TLS-Protocol"].startswith("TLSv1.")
        assert r.headers["X-TLS-SNI"] == SERVER_NAME
        assert await r.read() == STATIC
    async with p.session.get(p.url + "/static") as r:  # the pooled TLS connection again
        assert r.headers["X-Conn-Requests"] == "2"
        assert await r.read() == STATIC
    body = blob(2 * 2**20 + 5, seed=3)
    async with p.session.post(p.url + "/echo", data=io.BytesIO(body)) as r:  # nginx, app, back
        assert r.status == 200
        assert await r.read() == body
    async with p.session.get(p.url + "/download?size=1048577&chunked=1") as r:
        data = await r.read()
        assert hashlib.sha256(data).hexdigest() == r.headers["X-Sha256"]
    assert p.sample("http_request_total", path="/static", status="200") == 2
    assert p.sample("http_request_total", path="/echo", method="POST", status="200") == 1
    assert p.sample("http_response_body_size_bytes_sum", path="/static") == 2 * len(STATIC)
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_tls_error") == 0


async def test_ip_address_is_verified_without_server_name(
    make_proxy: ProxyFactory, tls: TlsUpstream
) -> None:
    p = await make_proxy(upstream=tls.https_url, upstream_tls=_trusting(tls))
    async with p.session.get(p.url + "/static") as r:
        assert r.status == 200
        assert await r.read() == STATIC


async def test_untrusted_certificate_is_502_counted_and_logged(
    make_proxy: ProxyFactory, tls: TlsUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.proxy.upstream")
    p = await make_proxy(upstream=tls.https_url)  # the system CAs: the test CA is not one
    async with p.session.get(p.url + "/static?token=hunter2") as r:
        assert r.status == 502
        assert await r.text() == "upstream TLS handshake failed\n"
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_tls_error") == 1
    assert p.sample("http_request_errors_total", path="/static", status="502") == 1
    [record] = _upstream_warnings(caplog)
    message = record.getMessage()
    assert message.startswith("upstream_tls_error on GET /static")
    assert message.endswith("(certificate verify failed: unable to get local issuer certificate)")
    assert "hunter2" not in message
    assert record.__dict__["reason"] == "upstream_tls_error"
    assert record.__dict__["upstream"] == tls.https_url


async def test_wrong_server_name_fails(
    make_proxy: ProxyFactory, tls: TlsUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.proxy.upstream")
    tls_options = _trusting(tls, server_name="other.test")
    p = await make_proxy(upstream=tls.https_url, upstream_tls=tls_options)
    async with p.session.get(p.url + "/static") as r:
        assert r.status == 502
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_tls_error") == 1
    [record] = _upstream_warnings(caplog)
    assert "other.test" in record.getMessage()  # "Hostname mismatch ... 'other.test'"


async def test_insecure_skip_verify_works_and_warns(
    make_proxy: ProxyFactory, tls: TlsUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.proxy.tls")
    p = await make_proxy(
        upstream=tls.https_url, upstream_tls=UpstreamTlsConfig(insecure_skip_verify=True)
    )
    [warning] = [r for r in caplog.records if r.name == "sidecar.proxy.tls"]
    assert warning.levelno == logging.WARNING
    assert "insecure_skip_verify" in warning.getMessage()
    async with p.session.get(p.url + "/static") as r:
        assert r.status == 200
        assert r.headers["X-TLS-Protocol"].startswith("TLSv1.")
        assert await r.read() == STATIC


async def test_plain_http_server_behind_https_url_is_502(
    make_proxy: ProxyFactory, tls: TlsUpstream
) -> None:
    p = await make_proxy(upstream=f"https://127.0.0.1:{tls.plain_port}")
    for _ in range(2):
        async with p.session.get(p.url + "/") as r:
            assert r.status == 502
            assert "plain http" not in await r.text()
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_tls_error") == 2


async def test_websocket_upgrade_goes_over_tls(make_proxy: ProxyFactory, tls: TlsUpstream) -> None:
    p = await make_proxy(upstream=tls.https_url, upstream_tls=_trusting(tls))
    async with p.session.ws_connect(p.url.replace("http", "ws") + "/ws") as ws:
        await ws.send_str("over tls")
        assert (await ws.receive_str(timeout=10)) == "over tls"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive_bytes(timeout=10)) == b"\x00\x01"
    assert p.sample("http_request_total", path="/ws", status="101") == 1


async def test_websocket_to_an_untrusted_upstream_is_502(
    make_proxy: ProxyFactory, tls: TlsUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.proxy.upstream")
    p = await make_proxy(upstream=tls.https_url)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await p.session.ws_connect(p.url.replace("http", "ws") + "/ws")
    assert info.value.status == 502
    assert p.sample("sidecar_proxy_errors_total", reason="upstream_tls_error") == 1
    [record] = _upstream_warnings(caplog)
    assert record.getMessage().startswith("upstream_tls_error on GET /ws: answered 502")
    assert "certificate verify failed" in record.getMessage()


def test_https_default_port_is_443() -> None:
    upstream = Upstream(ProxyConfig(upstream="https://app.internal"))
    assert upstream.address == ("app.internal", 443)
    assert upstream.display == "https://app.internal"


@pytest.mark.parametrize(
    ("port", "cause"),
    [
        ("tls", "certificate verify failed: unable to get local issuer certificate"),
        ("plain", "wrong version number"),
    ],
)
def test_real_sidecar_on_uvloop_refuses_untrusted_and_plain(
    tls: TlsUpstream, tmp_path: Path, port: str, cause: str
) -> None:
    """The real ``causality-sidecar run`` (uvloop's TLS, not asyncio's): an untrusted
    certificate and a plain-HTTP server behind ``https://`` are 502s, counted and logged."""
    upstream = f"https://127.0.0.1:{tls.tls_port if port == 'tls' else tls.plain_port}"
    ports = local_ports("proxy", "admin", "ingest")
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        f"proxy: {{listen: '127.0.0.1:{ports['proxy']}', upstream: '{upstream}'}}\n"
        f"admin: {{listen: '127.0.0.1:{ports['admin']}'}}\n"
        f"ingest: {{listen: '127.0.0.1:{ports['ingest']}'}}\n"
    )
    admin = f"127.0.0.1:{ports['admin']}"
    with run_sidecar(["run", "--config", str(config)], admin=admin) as sidecar:
        status, _, body = http_get(f"http://127.0.0.1:{ports['proxy']}/static")
        assert (status, body) == (502, b"upstream TLS handshake failed\n")
        metrics = http_get(sidecar.url("/metrics"))[2].decode()
        counted = r'sidecar_proxy_errors_total\{[^}]*reason="upstream_tls_error"[^}]*\} 1\.0'
        assert re.search(counted, metrics)
        wait_until(lambda: cause in sidecar.logs(), 10, "the failure's log line")
        [line] = [json.loads(x) for x in sidecar.logs().splitlines() if "upstream_failure" in x]
    assert line["level"] == "warning"
    assert line["msg"] == (
        f"upstream_tls_error on GET /static: answered 502, upstream {upstream} ({cause})"
    )
