"""The real image, built from the Dockerfile by `make image` with podman and run
read-only as its non-root user beside the demo upstream, all on the host's loopback:
traffic through its proxy port, an OTLP push into its ingest port, /metrics read back.

The build reuses podman's layer cache: the dependency layer is rebuilt only when
pyproject.toml changes, the package layer when sidecar/ changes. A cold build (a new
machine: debootstrap of the stand-in base and every wheel) takes minutes, hence the
longer timeout on this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from sidecar import __version__
from sidecar.observability import Metrics
from tests.support.chart import CONFIG_MOUNT, ROOT, render
from tests.support.demo_app import answers, demo_app
from tests.support.process import free_port, http_get, wait_until

IMAGE_SCRIPT = ROOT / "scripts" / "image"  # what `make image` runs
# podman, never docker here (the tests run the image with podman); the base is never pulled
# in tests: where it is not local, the script builds its Debian stand-in.
BUILD_ENV = {**os.environ, "IMAGE_ENGINE": "podman", "IMAGE_OFFLINE": "1"}
IMAGE = "localhost/causality-sidecar:test"
BUILD_TIMEOUT_S = 900
USER = "10001:10001"

pytestmark = [pytest.mark.xdist_group("podman-image"), pytest.mark.timeout(BUILD_TIMEOUT_S + 60)]


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run podman through the project's image script (its machine settings)."""
    done = subprocess.run(
        [str(IMAGE_SCRIPT), "podman", *args],
        capture_output=True, text=True, timeout=timeout, check=False, env=BUILD_ENV,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """Build the image once per module with `make image` and return `podman image inspect`."""
    started = time.monotonic()
    done = subprocess.run(
        ["make", "image", f"IMAGE={IMAGE}"],
        cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        env=BUILD_ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    print(f"image build took {time.monotonic() - started:.1f}s")
    [inspected] = json.loads(podman("image", "inspect", IMAGE).stdout)
    return dict(inspected)


def run_in_image(*args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    """`podman run --rm --read-only` a one-off command in the image."""
    extra = ["--entrypoint", entrypoint] if entrypoint else []
    return podman("run", "--rm", "--read-only", "--network", "none", *extra, IMAGE, *args)


def test_image_metadata(image: dict[str, Any]) -> None:
    config = image["Config"]
    assert config["User"] == USER
    assert set(config["ExposedPorts"]) == {"8000/tcp", "9464/tcp"}
    assert config["Entrypoint"] == ["causality-sidecar"]
    assert config["Cmd"] == ["run"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["MALLOC_MMAP_THRESHOLD_"] == "4194304"
    assert env["MALLOC_TRIM_THRESHOLD_"] == "67108864"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "causality-sidecar"
    assert labels["org.opencontainers.image.version"] == __version__


def test_version_runs_read_only(image: dict[str, Any]) -> None:
    done = run_in_image("version")
    assert done.stdout.startswith(f"causality-sidecar {__version__} "), done.stdout
    assert done.stdout.rstrip().endswith("extensions: c)"), done.stdout  # built, not skipped


PROBE = """
import os, shutil, sys, sysconfig
print(os.getuid(), os.getgid())
print([t for t in ("gcc", "cc", "make", "/opt/venv/bin/pip") if shutil.which(t)])
print(sorted(p for p in ("/root/.cache", "/tmp/wheels", "/src") if os.path.exists(p)))
print(sys.prefix)
try:
    open("/opt/venv/x", "w")
except OSError as err:
    print(type(err).__name__)
"""


def test_image_reads_the_chart_config_at_its_mount_path(
    image: dict[str, Any], tmp_path: Path
) -> None:
    """The chart's ConfigMap, mounted where the chart mounts it, passes check-config in the image."""
    rendered = render()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(yaml.safe_dump(rendered.sidecar_config))
    config_dir.chmod(0o755)
    (config_dir / "config.yaml").chmod(0o644)
    mount = str(Path(CONFIG_MOUNT).parent)
    done = podman(
        "run", "--rm", "--read-only", "--network", "none",
        "-v", f"{config_dir}:{mount}:ro", IMAGE,
        "check-config", CONFIG_MOUNT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["proxy"]["upstream"] == "http://127.0.0.1:8080"


def test_runs_as_non_root_without_compilers_or_caches(image: dict[str, Any]) -> None:
    done = run_in_image("-c", PROBE, entrypoint="python")
    uid_gid, tools, leftovers, prefix, write = done.stdout.splitlines()
    assert uid_gid == "10001 10001"
    assert tools == "[]"
    assert leftovers == "[]"
    assert prefix == "/opt/venv"
    assert write in ("OSError", "PermissionError")  # read-only root filesystem


@dataclass
class Running:
    """The container and the ports it listens on (host network, loopback)."""

    name: str
    proxy: int
    admin: int
    otlp: int

    def logs(self) -> str:
        """The container's output so far."""
        return podman("logs", self.name, check=False).stdout


@contextlib.contextmanager
def demo_upstream() -> Iterator[int]:
    """The project's demo app (`python -m sidecar.demo`) on a free loopback port."""
    port = free_port()
    with demo_app(port):
        yield port


@pytest.fixture(scope="module")
def running(image: dict[str, Any]) -> Iterator[Running]:
    """The image's default command (`run`) read-only, host network, beside the demo app."""
    with demo_upstream() as upstream:
        proxy, admin, otlp = free_port(), free_port(), free_port()
        name = f"causality-sidecar-test-{os.getpid()}"
        podman(
            "run", "-d", "--name", name, "--read-only", "--network", "host",
            IMAGE, "run",
            "--upstream", f"http://127.0.0.1:{upstream}",
            "--listen", f"127.0.0.1:{proxy}",
            "--admin-listen", f"127.0.0.1:{admin}",
            "--otlp-listen", f"127.0.0.1:{otlp}",
        )  # fmt: skip
        container = Running(name, proxy, admin, otlp)
        try:
            try:
                wait_until(
                    lambda: answers(f"http://127.0.0.1:{admin}/readyz"), 30, "container ready"
                )
            except AssertionError as err:
                raise AssertionError(f"{err}\n{container.logs()}") from None
            yield container
        finally:
            podman("stop", "--time", "15", name, check=False, timeout=60)
            podman("rm", "--force", name, check=False)


def test_health_and_metrics_answer(running: Running) -> None:
    assert http_get(f"http://127.0.0.1:{running.admin}/healthz")[0] == 200
    status, _, body = http_get(f"http://127.0.0.1:{running.admin}/metrics")
    assert status == 200, running.logs()
    assert b"sidecar_build_info" in body


def _request_count(admin: int, path: str) -> float:
    text = http_get(f"http://127.0.0.1:{admin}/metrics")[2].decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_request_total"
        and sample.labels.get("path") == path
        and sample.labels.get("status") == "200"
    )


def test_traffic_through_the_proxy_is_counted(running: Running) -> None:
    before = _request_count(running.admin, "/users/{id}")
    for user in range(1, 6):
        status, _, body = http_get(f"http://127.0.0.1:{running.proxy}/users/{user}")
        assert status == 200, running.logs()
        assert json.loads(body)["id"] == user
    assert _request_count(running.admin, "/users/{id}") == before + 5, running.logs()


def test_otlp_push_into_the_container_shows_in_metrics(running: Running) -> None:
    exporter = OTLPMetricExporter(endpoint=f"http://127.0.0.1:{running.otlp}/v1/metrics", timeout=5)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    resource = Resource.create({"service.name": "image-test-pipeline"})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    try:
        Metrics.create(provider.get_meter("image-test")).s3_files_written.add(7)
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown(timeout_millis=5000)
    text = http_get(f"http://127.0.0.1:{running.admin}/metrics")[2].decode()
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "s3_files_written_total"
        and sample.labels.get("service_name") == "image-test-pipeline"
    ]
    assert values == [7.0], running.logs()


def test_sigterm_as_pid_1_exits_cleanly(running: Running) -> None:
    """`podman stop` sends SIGTERM to the entrypoint (PID 1): it drains and exits 0."""
    started = time.monotonic()
    podman("stop", "--time", "20", running.name, timeout=60)
    took = time.monotonic() - started
    state = podman("inspect", "--format", "{{.State.ExitCode}}", running.name).stdout.strip()
    assert state == "0", running.logs()
    assert took < 20, f"stop took {took:.1f}s: SIGTERM was not handled, podman had to SIGKILL"
