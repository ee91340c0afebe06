"""Shared benchmark helpers: tools, CPU layout, TCP settings, wrk runs, process counters.

Used by ``bench/proxy.py`` (and any other ``bench/*`` script). Everything listens on
127.0.0.1; every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONGESTION = Path("/proc/sys/net/ipv4/tcp_congestion_control")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ensure_tools(*specs: str) -> None:
    """Install missing Debian packages (``PACKAGE:COMMAND``) through the project script."""
    subprocess.run([str(ROOT / "scripts" / "ensure-debian-packages"), *specs], check=True)
    for spec in specs:
        command = spec.split(":", 1)[1]
        if not (shutil.which(command) or Path("/usr/sbin", command).exists()):
            raise SystemExit(f"bench: {command} is missing and could not be installed")


def cpu_layout() -> tuple[str, str]:
    """(cores for load generator + upstream, cores for the proxy under test)."""
    count = os.cpu_count() or 1
    if count < 2:
        return "0", "0"
    return "0", "1"


@contextlib.contextmanager
def congestion_control(algorithm: str = "cubic") -> Iterator[str]:
    """Set TCP congestion control for the run and restore it; yields what is in effect."""
    try:
        previous = CONGESTION.read_text().strip()
    except OSError:
        yield "unknown"
        return
    changed = False
    if previous != algorithm:
        try:
            CONGESTION.write_text(algorithm)
            changed = True
        except OSError:
            pass
    try:
        yield CONGESTION.read_text().strip()
    finally:
        if changed:
            CONGESTION.write_text(previous)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Poll until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: nothing listening on port {port}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out.extend(process_tree(int(child)))
    return out


@dataclass(frozen=True)
class Counters:
    """CPU seconds and minor page faults of a process tree."""

    cpu: float
    minor_faults: int


def counters(pid: int) -> Counters:
    """Current CPU time and minor faults summed over ``pid``'s tree."""
    cpu = 0.0
    faults = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            faults += int(fields[7])
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return Counters(cpu, faults)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run."""

    requests: int
    rps: float
    p50_us: float
    p99_us: float
    errors: int


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def _latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if match is None:
        raise SystemExit(f"bench: no {percentile}% latency in wrk output:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str, connections: int, duration: float, cores: str, script: Path | None = None
) -> WrkResult:
    """Run wrk (one thread) pinned to ``cores`` and parse its report; ``script``: wrk's
    ``-s`` Lua file (e.g. to POST a body)."""
    command = [
        "taskset", "-c", cores, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
        "--latency", "--timeout", "10s", *(["-s", str(script)] if script else []), url,
    ]  # fmt: skip
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    errors = 0
    for match in re.finditer(r"(?:connect|read|write|timeout) (\d+)", text):
        errors += int(match.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    return WrkResult(requests, rps, _latency(text, "50"), _latency(text, "99"), errors)


def median(values: Sequence[float]) -> float:
    """The median (of >= 1 values)."""
    return float(statistics.median(values))


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
