"""Each chart's README lists every value of its values.yaml, as scripts/chart-readme writes it."""

from __future__ import annotations

import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.chart import CHART_DIR, INJECTOR_CHART_DIR, ROOT, documented_values

SCRIPT = ROOT / "scripts" / "chart-readme"
CHARTS = pytest.mark.parametrize("chart", [CHART_DIR, INJECTOR_CHART_DIR], ids=lambda p: p.name)


def _script() -> ModuleType:
    """scripts/chart-readme as a module (its file name has no .py)."""
    loader = SourceFileLoader("chart_readme", str(SCRIPT))
    spec = spec_from_loader("chart_readme", loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


def _rows(readme: str) -> dict[str, str]:
    """Value path -> its table row, from the README's Values tables."""
    return {
        line.split("`", 2)[1]: line
        for line in readme.splitlines()
        if line.startswith("| `")
    }  # fmt: skip


def test_committed_tables_are_what_the_script_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True, text=True, timeout=30, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@CHARTS
def test_every_documented_value_has_one_row(chart: Path) -> None:
    values_text = (chart / "values.yaml").read_text(encoding="utf-8")
    rows = _rows((chart / "README.md").read_text(encoding="utf-8"))
    assert set(rows) == documented_values(values_text)
    assert len(documented_values(values_text)) > 40


def test_rows_carry_the_description_and_the_default_of_values_yaml() -> None:
    rows = _rows((CHART_DIR / "README.md").read_text(encoding="utf-8"))
    assert rows["replicaCount"] == (
        "| `replicaCount` | Pod replicas (ignored when autoscaling.enabled) | `1` |"
    )
    assert rows["sidecar.image.tag"].endswith('| `""` |')
    assert rows["app.enabled"].endswith("| `true` |")
    # A whole config tree is not inlined: the row points at values.yaml.
    assert rows["sidecar.config"].endswith("see `values.yaml` |")


def test_check_mode_fails_on_a_stale_table() -> None:
    """The check compares against values.yaml: a changed default makes the README stale."""
    script = _script()
    values_text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    assert script.render(readme, values_text, "README.md") == readme
    changed = values_text.replace("\nreplicaCount: 1\n", "\nreplicaCount: 3\n")
    assert changed != values_text
    regenerated = script.render(readme, changed, "README.md")
    assert regenerated != readme
    assert _rows(regenerated)["replicaCount"].endswith("| `3` |")


def test_a_param_that_is_not_a_value_is_refused() -> None:
    script = _script()
    with pytest.raises(SystemExit, match=r"@param nosuch\.key is not a key"):
        script.table("## @param nosuch.key Not there\nother: 1\n")


def test_markdown_table_cells_escape_pipes() -> None:
    script = _script()
    text = script.table("## @param a Either x | y\na: 'p|q'\n")
    assert '| `a` | Either x \\| y | `"p\\|q"` |' in text
