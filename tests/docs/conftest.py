"""Fixtures of tests/docs: one ``causality-sidecar demo`` per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.process import SidecarProcess, local_ports, run_sidecar


def pytest_configure(config: pytest.Config) -> None:
    """``xdist_group`` is registered by pytest-xdist; runs with ``-p no:xdist`` need it too."""
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker group")


@pytest.fixture(scope="module")
def demo() -> Iterator[SidecarProcess]:
    """``causality-sidecar demo`` on free loopback ports, once for the module."""
    ports = local_ports("proxy", "admin", "otlp", "app")
    admin = f"127.0.0.1:{ports['admin']}"
    args = ["demo", "--listen", f"127.0.0.1:{ports['proxy']}", "--admin-listen", admin]
    args += ["--otlp-listen", f"127.0.0.1:{ports['otlp']}"]
    args += ["--app-listen", f"127.0.0.1:{ports['app']}"]
    with run_sidecar(args, admin=admin) as sidecar:
        sidecar.ports.update(ports)
        yield sidecar
