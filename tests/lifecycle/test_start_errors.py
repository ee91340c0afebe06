"""Issue 15 item 11: a listener that cannot be bound is one clean line naming the
component and the key, exit 1, in ``run`` and in ``demo``, for every listener.

The port is taken by a real listening socket; the real CLI runs as a subprocess.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.lifecycle import StartError, bind_problem
from tests.support.process import free_port

FLAGS = {"proxy": "--listen", "admin": "--admin-listen", "ingest": "--otlp-listen"}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port with a real listener on 127.0.0.1 for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _flags(taken: str, address: str) -> list[str]:
    """Every listener on a free loopback port, except ``taken`` on ``address``."""
    out: list[str] = []
    for component, flag in FLAGS.items():
        out += [flag, address if component == taken else f"127.0.0.1:{free_port()}"]
    return out


def _assert_one_clean_line(done: subprocess.CompletedProcess[str], line: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == line
    assert done.stderr.count(line) == 1


@pytest.mark.parametrize("command", ["run", "demo"])
@pytest.mark.parametrize("component", ["proxy", "admin", "ingest"])
def test_a_busy_listener_is_one_line_naming_component_and_key(
    busy_port: int, command: str, component: str
) -> None:
    address = f"127.0.0.1:{busy_port}"
    extra = (
        ["--no-traffic", "--app-listen", f"127.0.0.1:{free_port()}"] if command == "demo" else []
    )
    done = _cli(command, *extra, *_flags(component, address))
    key = f"{component}.listen"
    _assert_one_clean_line(
        done, f"causality-sidecar: cannot start {component}: address {address} is in use ({key})"
    )


def test_a_busy_demo_app_port_names_app_listen(busy_port: int) -> None:
    address = f"127.0.0.1:{busy_port}"
    done = _cli("demo", "--no-traffic", "--app-listen", address, *_flags("", ""))
    _assert_one_clean_line(
        done,
        f"causality-sidecar: cannot start the demo app: address {address} is in use (--app-listen)",
    )


def test_an_address_not_of_this_host_says_so() -> None:
    """192.0.2.1 (TEST-NET-1) is on no interface here: EADDRNOTAVAIL, not a traceback."""
    done = _cli("run", *_flags("admin", "192.0.2.1:9464"))
    _assert_one_clean_line(
        done,
        "causality-sidecar: cannot start admin: address 192.0.2.1:9464 "
        "is not an address of this host (admin.listen)",
    )


@pytest.mark.parametrize(
    ("exc", "problem"),
    [(OSError(errno.EADDRINUSE, "Address already in use"), "is in use"),
     (OSError(errno.EACCES, "Permission denied"),
      "is not allowed (permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE)"),
     (OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "is not an address of this host"),
     (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
      "cannot be resolved (Name or service not known)"),
     (OSError(errno.EMFILE, "Too many open files"), "cannot be bound (Too many open files)")],
    ids=["in-use", "permission", "not-here", "unresolved", "other"],
)  # fmt: skip
def test_bind_problem(exc: OSError, problem: str) -> None:
    assert bind_problem(exc) == problem
    message = str(StartError("proxy", "0.0.0.0:80", "proxy.listen", exc))
    assert message == f"cannot start proxy: address 0.0.0.0:80 {problem} (proxy.listen)"


def _unprivileged() -> list[str]:
    """The command prefix that runs the CLI without the right to bind low ports."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")  # util-linux, on every Debian
    assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_a_privileged_port_without_privileges_says_so() -> None:
    first_free = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if first_free == 0:
        pytest.skip("this kernel lets every user bind every port (ip_unprivileged_port_start=0)")
    address = f"127.0.0.1:{first_free - 1}"
    done = subprocess.run(
        [*_unprivileged(), sys.executable, "-m", "sidecar", "run", *_flags("proxy", address)],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    _assert_one_clean_line(
        done,
        f"causality-sidecar: cannot start proxy: address {address} is not allowed (permission "
        "denied: ports below 1024 need root or CAP_NET_BIND_SERVICE) (proxy.listen)",
    )
