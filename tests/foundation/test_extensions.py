"""The C extensions are optional (issue 18): a build without a compiler still installs and
runs on the pure-Python paths, and ``SIDECAR_NO_EXTENSIONS`` forces those paths; either
way the process says which path runs (the start log, ``sidecar_build_info``,
``causality-sidecar version``).

The differential tests that compare the two paths are in tests/events and tests/merge,
which the Makefile's ``test`` target runs in both modes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sidecar import extensions
from tests.support.process import http_get, local_ports, run_sidecar

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "sidecar"]


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, check=False, env={**os.environ, **env}, timeout=120
    )


def _build_info(admin: str) -> str:
    status, _, body = http_get(f"http://{admin}/metrics")
    assert status == 200
    line = next(line for line in body.decode().splitlines() if line.startswith("sidecar_build"))
    return line


def _flags() -> list[str]:
    ports = local_ports("proxy", "admin", "otlp")
    return [
        "--listen", f"127.0.0.1:{ports['proxy']}",
        "--admin-listen", f"127.0.0.1:{ports['admin']}",
        "--otlp-listen", f"127.0.0.1:{ports['otlp']}",
        "--upstream", "http://127.0.0.1:9",
        "--log-level", "info",
    ]  # fmt: skip


# SIDECAR_NO_EXTENSIONS value -> (label, what the start log says); "" counts as unset
MODES = {
    "unset": ("", "c", "C extensions in use: " + ", ".join(extensions.MODULES)),
    "set": ("1", "python", "C extensions off (SIDECAR_NO_EXTENSIONS is set)"),
    "any-value": ("yes", "python", "C extensions off (SIDECAR_NO_EXTENSIONS is set)"),
}


@pytest.mark.parametrize(("value", "label", "logged"), MODES.values(), ids=MODES)
def test_the_variable_chooses_the_path_and_the_process_says_which(
    value: str, label: str, logged: str
) -> None:
    env = {extensions.ENV: value}
    version = _run(*CLI, "version", env=env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.rstrip().endswith(f", extensions: {label})")
    flags = _flags()
    with run_sidecar(["run", *flags], admin=flags[3], env=env) as car:
        assert f'extensions="{label}"' in _build_info(car.admin)
        assert car.stop() == 0
    assert car.logs().count(logged) == 1  # once, at start


def _source_copy(to: Path) -> Path:
    """What ``pip wheel .`` reads, without built extensions or build leftovers."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, to / name)
    junk = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "sidecar", to / "sidecar", ignore=junk)
    return to


def test_a_build_without_a_compiler_installs_and_runs_in_pure_python(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    source = _source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = _run(
        *pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-v", "-w", str(wheels),
        env={"CC": "/bin/false"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    for name in extensions.MODULES:  # setuptools says so, and goes on
        assert f'building extension "{name}" failed' in built.stdout + built.stderr
    (wheel,) = wheels.glob("causality_sidecar-*.whl")
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".so")]

    target = tmp_path / "site"
    installed = _run(*pip, "install", "--no-deps", "--no-index", "--target", str(target),
                     str(wheel), env={})  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    # the wheel's package first (PYTHONSAFEPATH: not the working directory's), then this
    # venv's site-packages for the dependencies
    env = {"PYTHONPATH": str(target), "PYTHONSAFEPATH": "1", extensions.ENV: ""}
    where = _run(sys.executable, "-c", "import sidecar; print(sidecar.__file__)", env=env)
    assert where.stdout.startswith(str(target)), where  # the wheel's package, not this tree's
    version = _run(str(target / "bin" / "causality-sidecar"), "version", env=env)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"causality-sidecar \S+ \(Python \S+, extensions: python\)\n",
                        version.stdout)  # fmt: skip

    flags = _flags()
    with run_sidecar(["run", *flags], admin=flags[3], env=env) as car:
        assert 'extensions="python"' in _build_info(car.admin)
        assert car.stop() == 0
    assert "C extensions not built, pure-Python paths run instead" in car.logs()
