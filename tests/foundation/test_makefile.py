"""``make help`` lists every target of the Makefile with the ``##`` comment that says what
it does (a target without one is a target nobody can find)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _targets() -> set[str]:
    """Every plain target the Makefile defines (not files, not variables)."""
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):(?!=)", text, re.M))


def test_help_lists_every_target_with_what_it_does() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert set(listed) == _targets()
    assert {"run", "test", "help", "image"} <= set(listed)
    assert all(len(text) > 10 for text in listed.values())


def test_phony_names_every_target() -> None:
    text = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY: (.*)$", text, re.M).group(1).split())  # type: ignore[union-attr]
    assert phony == _targets()
