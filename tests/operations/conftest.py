"""Fixtures of tests/operations: a real Prometheus and ``causality-sidecar demo``."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import SidecarProcess, local_ports, run_sidecar
from tests.support.prometheus import prometheus_factory

__all__ = ["demo", "prometheus_factory"]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[SidecarProcess]:
    """``causality-sidecar demo`` on free loopback ports, events inspection on.

    ``demo.ports`` names them: proxy, admin, otlp, app.
    """
    ports = local_ports("proxy", "admin", "otlp", "app")
    config = tmp_path / "sidecar.yaml"
    config.write_text("events:\n  enabled: true\n")
    admin = f"127.0.0.1:{ports['admin']}"
    args = [
        "demo",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{ports['proxy']}",
        "--admin-listen",
        admin,
        "--otlp-listen",
        f"127.0.0.1:{ports['otlp']}",
        "--app-listen",
        f"127.0.0.1:{ports['app']}",
    ]
    with run_sidecar(args, admin=admin) as sidecar:
        sidecar.ports.update(ports)
        yield sidecar
