"""HTTPS and mutual TLS on the admin port (``admin.tls.*``), with a real Prometheus.

Prometheus scrapes ``/metrics`` with a ``tls_config`` holding a client certificate; a job
without one is refused (403), a plain-HTTP job fails; kubelet-style probes without a
client certificate still get ``/healthz`` and ``/readyz``. The certificate is re-read
when its files change. Bad ``admin.tls`` settings exit 2 naming the key.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.process import SidecarProcess, free_port, run_sidecar, wait_until
from tests.support.prometheus import (
    PrometheusFactory,
    prometheus_factory,  # noqa: F401 (the fixture)
    static_scrape_config,
)
from tests.support.tls import KeyPair, Pki, certificate_der, served_certificate, write_atomically


@dataclass
class TlsSidecar:
    process: SidecarProcess
    port: int
    pki: Pki
    server: KeyPair
    client: KeyPair

    def get(self, path: str, client: KeyPair | None = None) -> tuple[int, bytes]:
        context = self.pki.client_context(client)
        url = f"https://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def write_config(tmp: Path, admin_port: int, tls: dict[str, str]) -> Path:
    config = {
        "proxy": {"listen": f"127.0.0.1:{free_port()}"},
        "ingest": {"listen": f"127.0.0.1:{free_port()}"},
        "admin": {"listen": f"127.0.0.1:{admin_port}", "tls": tls},
        "shutdown": {"drain_delay": "0s"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _ready(sidecar: TlsSidecar) -> bool:
    if sidecar.process.proc.poll() is not None:
        raise AssertionError(f"sidecar exited: {sidecar.process.logs()}")
    try:
        return sidecar.get("/readyz")[0] == 200
    except OSError:
        return False


@contextlib.contextmanager
def tls_sidecar(tmp: Path, *, mutual: bool = True) -> Iterator[TlsSidecar]:
    pki = Pki(tmp / "pki")
    server, client = pki.server("admin"), pki.client("client", "prometheus")
    port = free_port()
    tls = {"cert_file": str(server.cert), "key_file": str(server.key)}
    if mutual:
        tls["client_ca_file"] = str(pki.ca_file)
    config = write_config(tmp, port, tls)
    with run_sidecar(["run", "--config", str(config)], wait_ready=False) as process:
        sidecar = TlsSidecar(process, port, pki, server, client)
        wait_until(lambda: _ready(sidecar), 20, "the sidecar ready over HTTPS")
        yield sidecar


def test_prometheus_scrapes_with_a_client_certificate_and_nothing_else_gets_in(
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,  # noqa: F811 (the imported fixture)
) -> None:
    with tls_sidecar(tmp_path) as sidecar:
        target = f"127.0.0.1:{sidecar.port}"
        ca = str(sidecar.pki.ca_file)
        client = {"cert_file": str(sidecar.client.cert), "key_file": str(sidecar.client.key)}
        prometheus = prometheus_factory(
            [
                static_scrape_config("mtls", target, scheme="https", tls_config={"ca_file": ca, **client}),
                static_scrape_config("no-client-cert", target, scheme="https", tls_config={"ca_file": ca}),
                static_scrape_config("plain-http", target),
            ]
        )  # fmt: skip

        def settled() -> dict[str, tuple[str, str]] | None:
            targets = prometheus.targets()
            state = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets}
            return (
                state
                if len(state) == 3 and "unknown" not in {h for h, _ in state.values()}
                else None
            )

        wait_until(lambda: settled() is not None, 30, "three scraped targets")
        state = settled()
        assert state is not None
        assert state["mtls"] == ("up", "")
        assert state["no-client-cert"][0] == "down"
        assert "403" in state["no-client-cert"][1]
        assert state["plain-http"][0] == "down"
        build = prometheus.wait_for_result('sidecar_build_info{job="mtls"}')
        assert build.values() == [1.0]


def test_probes_stay_open_metrics_needs_a_client_certificate(tmp_path: Path) -> None:
    with tls_sidecar(tmp_path) as sidecar:
        assert sidecar.get("/healthz")[0] == 200  # kubelet presents no certificate
        assert sidecar.get("/readyz")[0] == 200
        status, body = sidecar.get("/metrics")
        assert (status, b"client certificate is required" in body) == (403, True)
        status, body = sidecar.get("/metrics", sidecar.client)
        assert status == 200
        assert b"sidecar_build_info" in body
        stranger = Pki(tmp_path / "stranger").client("mallory", "mallory")
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            sidecar.get("/metrics", stranger)


def test_tls_without_client_ca_serves_metrics_to_any_tls_client(tmp_path: Path) -> None:
    with tls_sidecar(tmp_path, mutual=False) as sidecar:
        status, body = sidecar.get("/metrics")
        assert status == 200
        assert b"sidecar_build_info" in body


def test_admin_certificate_rotation_without_restart(tmp_path: Path) -> None:
    with tls_sidecar(tmp_path) as sidecar:
        context = sidecar.pki.client_context()
        assert served_certificate(sidecar.port, context) == certificate_der(sidecar.server.cert)
        rotated = sidecar.pki.server("rotated")
        write_atomically(sidecar.server.key, rotated.key.read_bytes())
        write_atomically(sidecar.server.cert, rotated.cert.read_bytes())
        wanted = certificate_der(rotated.cert)
        wait_until(lambda: served_certificate(sidecar.port, context) == wanted, 10, "new cert")
        assert sidecar.get("/metrics", sidecar.client)[0] == 200
        assert sidecar.process.proc.poll() is None


@pytest.mark.parametrize(
    ("tls", "key", "problem"),
    [
        ({"cert_file": "{cert}"}, "admin.tls.key_file", "is required with admin.tls.cert_file"),
        ({"key_file": "{key}"}, "admin.tls.cert_file", "is required with admin.tls.key_file"),
        ({"client_ca_file": "{ca}"}, "admin.tls.client_ca_file", "needs admin.tls.cert_file"),
        ({"cert_file": "{missing}", "key_file": "{key}"}, "admin.tls.cert_file", "cannot read"),
        ({"cert_file": "{cert}", "key_file": "{other_key}"}, "admin.tls.key_file", "not the private key"),
        ({"cert_file": "{cert}", "key_file": "{key}", "client_ca_file": "{garbage}"}, "admin.tls.client_ca_file", "no PEM"),
    ],
)  # fmt: skip
def test_bad_admin_tls_exits_2_naming_the_key(
    tmp_path: Path, tls: dict[str, str], key: str, problem: str
) -> None:
    pki = Pki(tmp_path / "pki")
    pair, other = pki.server("a"), pki.server("b")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    paths = {
        "cert": pair.cert, "key": pair.key, "other_key": other.key, "ca": pki.ca_file,
        "missing": tmp_path / "missing.pem", "garbage": garbage,
    }  # fmt: skip
    resolved = {k: v.format(**{n: str(p) for n, p in paths.items()}) for k, v in tls.items()}
    config = write_config(tmp_path, free_port(), resolved)
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        done = subprocess.run(
            [sys.executable, "-m", "sidecar", *command], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 2, done.stderr
        assert f"{key}: " in done.stderr, done.stderr
        assert problem in done.stderr, done.stderr
