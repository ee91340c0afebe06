"""A real Prometheus server and promtool for tests (Debian package ``prometheus``).

Use the context manager or the fixture; both start ``/usr/bin/prometheus`` on a free
loopback port with a temporary TSDB, wait for ``/-/ready`` and stop it afterwards::

    from tests.support.prometheus import running_prometheus, static_scrape_config

    with running_prometheus(tmp_path, [static_scrape_config("sidecar", "127.0.0.1:9464")]) as prom:
        prom.wait_for_targets_up()
        samples = prom.wait_for_result("sidecar_build_info")

or, in a test module, ``from tests.support.prometheus import prometheus_factory  # noqa: F401``
and ask for the ``prometheus_factory`` fixture (``prom = prometheus_factory(scrape_configs)``).

``check_metrics(text)`` and ``check_rules``/``run_rule_tests`` wrap promtool; ``check_metrics``
implements design §6's "passes promtool check metrics".

Tool rule (the project's, for every system tool a test needs): when the binary is missing
and we are root, install the Debian package; otherwise the test FAILS under ``CI=true``
and is skipped locally with the reason. Everything here is synchronous (plain urllib and
subprocess); from async tests whose server runs in the same event loop, use the ``a*``
variants, which run the blocking call in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.process import free_port

__all__ = [
    "ALLOWED_METRICS_FINDINGS",
    "MetricsCheck",
    "PromQLError",
    "PrometheusFactory",
    "PrometheusServer",
    "QueryResult",
    "check_metrics",
    "check_rules",
    "free_port",
    "poll",
    "prometheus_factory",
    "promtool",
    "require_tool",
    "run_rule_tests",
    "running_prometheus",
    "static_scrape_config",
]

DEBIAN_PACKAGE = "prometheus"
PROMETHEUS_BINARY = "prometheus"
PROMTOOL_BINARY = "promtool"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3  # a freshly picked free port can be taken by someone else before we bind it
# design §6: the catalogue's millisecond metrics keep their names on purpose
ALLOWED_METRICS_FINDINGS = ('use base unit "seconds" instead of "milliseconds"',)
_INSTALL_LOCK = Path(tempfile.gettempdir()) / "causality-sidecar-apt.lock"

T = TypeVar("T")


# ------------------------------------------------------------------------ the binaries


def require_tool(name: str, package: str = DEBIAN_PACKAGE) -> str:
    """Return the path of system tool ``name``, installing Debian ``package`` if needed.

    Missing and root: ``apt-get install`` (once, under a file lock shared by xdist
    workers). Still missing: ``pytest.fail`` when ``CI=true``, else ``pytest.skip``.
    """
    found = _which(name)
    if found is None and os.geteuid() == 0:
        _apt_install(package)
        found = _which(name)
    if found is not None:
        return found
    reason = f"{name} not found: install the Debian package {package!r} (make system-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so a missing tool is a failure", pytrace=False)
    pytest.skip(reason)


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin")


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                env=env,
                check=False,
                capture_output=True,
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def promtool(
    *args: str, stdin: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` and return the completed process (never raises on exit code)."""
    binary = require_tool(PROMTOOL_BINARY)
    return subprocess.run(
        [binary, *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass(frozen=True, slots=True)
class MetricsCheck:
    """The outcome of ``promtool check metrics``: exit code and one finding per line."""

    returncode: int
    findings: tuple[str, ...]

    @property
    def passes(self) -> bool:
        """Design §6: exit 0, or exit 3 with only the allowed millisecond findings."""
        if self.returncode == 0:
            return True
        return self.returncode == 3 and not self.unexpected

    @property
    def unexpected(self) -> tuple[str, ...]:
        """Findings other than the allowed ``use base unit "seconds"`` notes."""
        return tuple(f for f in self.findings if not _is_allowed_finding(f))


def _is_allowed_finding(finding: str) -> bool:
    return any(finding.endswith(" " + allowed) for allowed in ALLOWED_METRICS_FINDINGS)


def check_metrics(text: str | bytes) -> MetricsCheck:
    """Lint exposition ``text`` with ``promtool check metrics`` (text format 0.0.4)."""
    data = text.decode() if isinstance(text, bytes) else text
    done = promtool("check", "metrics", stdin=data)
    lines = (done.stdout + done.stderr).splitlines()
    return MetricsCheck(done.returncode, tuple(line.strip() for line in lines if line.strip()))


def check_rules(*paths: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules PATHS``."""
    return promtool("check", "rules", *map(str, paths))


def run_rule_tests(*paths: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules PATHS`` (rule unit test files)."""
    return promtool("test", "rules", *map(str, paths))


# ------------------------------------------------------------------------ the server


class PromQLError(Exception):
    """Prometheus answered a query with an error (bad syntax, bad types, timeout)."""

    def __init__(self, expr: str, error_type: str, error: str) -> None:
        self.expr = expr
        self.error_type = error_type
        self.error = error
        super().__init__(f"{error_type}: {error} (in {expr!r})")


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The ``data`` of a Prometheus query answer."""

    result_type: str  # vector, matrix, scalar or string
    result: Any

    @property
    def is_empty(self) -> bool:
        """True when the query matched no series (scalars and strings are never empty)."""
        return self.result_type in ("vector", "matrix") and not self.result

    @property
    def series(self) -> list[dict[str, str]]:
        """The label sets of a vector or matrix result."""
        if self.result_type not in ("vector", "matrix"):
            return []
        return [dict(item["metric"]) for item in self.result]

    def values(self) -> list[float]:
        """The sample values of a vector result (the last value of each matrix series)."""
        if self.result_type == "vector":
            return [float(item["value"][1]) for item in self.result]
        if self.result_type == "matrix":
            return [float(item["values"][-1][1]) for item in self.result]
        return [float(self.result[1])] if self.result_type == "scalar" else []


def static_scrape_config(
    job: str,
    *targets: str,
    labels: Mapping[str, str] | None = None,
    metrics_path: str = "/metrics",
    **extra: Any,
) -> dict[str, Any]:
    """One ``scrape_configs`` entry with static targets (``host:port``) and target labels."""
    group: dict[str, Any] = {"targets": list(targets)}
    if labels:
        group["labels"] = dict(labels)
    return {"job_name": job, "metrics_path": metrics_path, "static_configs": [group], **extra}


@dataclass(slots=True)
class PrometheusServer:
    """A running ``prometheus`` process and a small client for its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    # ---- HTTP API

    def api(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 10.0) -> Any:
        """GET ``/api/v1/PATH`` and return its ``data``; errors raise ``PromQLError``."""
        query = urllib.parse.urlencode(params or {})
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:  # 400/422/503 carry a JSON error body
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            expr = (params or {}).get("query", path)
            raise PromQLError(expr, body.get("errorType", "?"), body.get("error", str(body)))
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> QueryResult:
        """Instant query ``expr`` (now, or at unix time ``at``)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", params)
        return QueryResult(data["resultType"], data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> QueryResult:
        """Range query ``expr`` between unix times ``start`` and ``end``."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        data = self.api("query_range", params)
        return QueryResult(data["resultType"], data["result"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (``labels``, ``health``, ``lastError``, ``lastScrape``...)."""
        data = self.api("targets", {"state": "active"})
        return list(data["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups."""
        return list(self.api("rules")["groups"])

    # ---- waiting

    def wait_for_targets_up(self, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until at least ``count`` targets report ``health == "up"``."""

        def up() -> list[dict[str, Any]] | None:
            healthy = [t for t in self.targets() if t["health"] == "up"]
            return healthy if len(healthy) >= count else None

        return poll(up, timeout, lambda: f"{count} target(s) up; targets: {self.targets()}")

    def wait_for_result(self, expr: str, timeout: float = 30.0) -> QueryResult:
        """Poll the instant query ``expr`` until it returns something."""

        def result() -> QueryResult | None:
            answer = self.query(expr)
            return None if answer.is_empty else answer

        return poll(result, timeout, lambda: f"a result for {expr!r}")

    def wait_for_scrapes(self, count: int = 2, timeout: float = 30.0) -> None:
        """Poll until every active target has been scraped ``count`` more times."""
        want = {t["scrapeUrl"]: self._scrape_count(t["scrapeUrl"]) + count for t in self.targets()}

        def done() -> bool | None:
            return all(self._scrape_count(url) >= n for url, n in want.items()) or None

        poll(done, timeout, lambda: f"{count} more scrapes of {sorted(want)}")

    def _scrape_count(self, scrape_url: str) -> int:
        expr = f'count_over_time(up{{instance="{urllib.parse.urlsplit(scrape_url).netloc}"}}[1h])'
        values = self.query(expr).values()
        return int(values[0]) if values else 0

    # ---- async variants (the blocking call runs in a worker thread)

    async def aquery(self, expr: str, at: float | None = None) -> QueryResult:
        """``query`` without blocking the event loop."""
        return await asyncio.to_thread(self.query, expr, at)

    async def await_targets_up(self, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """``wait_for_targets_up`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for_targets_up, count, timeout)

    async def await_result(self, expr: str, timeout: float = 30.0) -> QueryResult:
        """``wait_for_result`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for_result, expr, timeout)

    async def await_scrapes(self, count: int = 2, timeout: float = 30.0) -> None:
        """``wait_for_scrapes`` without blocking the event loop."""
        await asyncio.to_thread(self.wait_for_scrapes, count, timeout)

    # ---- lifecycle

    def log(self) -> str:
        """Prometheus's own log so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)


def poll(check: Callable[[], T | None], timeout: float, what: Callable[[], str]) -> T:
    """Call ``check`` until it returns something other than None, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what()}")
        time.sleep(0.1)


def start_prometheus(
    workdir: Path,
    scrape_configs: Sequence[Mapping[str, Any]],
    *,
    scrape_interval: str = "1s",
    rule_files: Sequence[Path] = (),
    extra_args: Sequence[str] = (),
) -> PrometheusServer:
    """Start Prometheus with ``scrape_configs`` in ``workdir`` and wait until it is ready.

    Raises:
        RuntimeError: it exited or never became ready (the message holds its log).
    """
    binary = require_tool(PROMETHEUS_BINARY)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [dict(c) for c in scrape_configs],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    failures: list[str] = []
    for attempt in range(START_ATTEMPTS):
        server = _launch(binary, workdir, config_path, attempt, extra_args)
        server.config = config
        try:
            _wait_ready(server)
        except RuntimeError as err:
            server.stop()
            failures.append(str(err))
            continue
        return server
    raise RuntimeError("prometheus did not start:\n" + "\n---\n".join(failures))


def _launch(
    binary: str, workdir: Path, config_path: Path, attempt: int, extra_args: Sequence[str]
) -> PrometheusServer:
    port = free_port()
    log_path = workdir / f"prometheus-{attempt}.log"
    args = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / f'tsdb-{attempt}'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=info",
        *extra_args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return PrometheusServer(f"http://127.0.0.1:{port}", process, workdir, log_path)


def _wait_ready(server: PrometheusServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"exited with {server.process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f}s:\n{server.log()[-3000:]}")


@contextlib.contextmanager
def running_prometheus(
    workdir: Path,
    scrape_configs: Sequence[Mapping[str, Any]],
    **kwargs: Any,
) -> Iterator[PrometheusServer]:
    """``start_prometheus`` as a context manager that always stops the server."""
    server = start_prometheus(workdir, scrape_configs, **kwargs)
    try:
        yield server
    finally:
        server.stop()


PrometheusFactory = Callable[..., PrometheusServer]


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Start Prometheus servers in the test's tmp dir: ``factory(scrape_configs, **kw)``."""
    servers: list[PrometheusServer] = []

    def factory(scrape_configs: Sequence[Mapping[str, Any]], **kwargs: Any) -> PrometheusServer:
        server = start_prometheus(tmp_path / f"prometheus-{len(servers)}", scrape_configs, **kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
