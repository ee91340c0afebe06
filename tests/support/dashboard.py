"""Read deploy/grafana/causality-sidecar.json: its panels, queries and variables.

Shared by the dashboard's structure test and the end-to-end test with the demo.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "causality-sidecar.json"
GENERATOR = ROOT / "deploy" / "grafana" / "dashboard.py"

# Grafana's built-in interval variables, as a 1 s scrape makes sense of them.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.DOTALL)
_METRIC_NAME = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
_BARE_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass(frozen=True, slots=True)
class Expression:
    """One PromQL expression of the dashboard and where it comes from."""

    where: str  # "panel title / refId" or "variable name"
    expr: str

    def substituted(self, values: Mapping[str, str]) -> str:
        """The expression with every ``$var`` / ``${var}`` replaced; unknown ones raise."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name in values:
                return values[name]
            if name in BUILTIN_VARIABLES:
                return BUILTIN_VARIABLES[name]
            raise KeyError(f"{self.where}: unknown variable ${name} in {self.expr!r}")

        return _VARIABLE.sub(replace, self.expr)

    @property
    def metric_names(self) -> set[str]:
        """Names of the metrics the expression selects (``name{...}``)."""
        bare = self.expr.strip()
        return set(_METRIC_NAME.findall(self.expr)) | ({bare} if _BARE_NAME.match(bare) else set())


def load() -> dict[str, Any]:
    """The dashboard model."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def all_panels(model: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def query_panels(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The panels that are not rows."""
    return [p for p in all_panels(model) if p["type"] != "row"]


def variables(model: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Template variables by name."""
    return {v["name"]: v for v in model["templating"]["list"]}


def panel_expressions(model: Mapping[str, Any]) -> list[Expression]:
    """The PromQL of every panel target."""
    return [
        Expression(f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in query_panels(model)
        for target in panel.get("targets", [])
    ]


def variable_expressions(model: Mapping[str, Any]) -> list[Expression]:
    """The series selector inside each ``label_values(selector, label)`` variable query."""
    found = []
    for name, var in variables(model).items():
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query.strip())
        if match is None:
            raise ValueError(
                f"variable {name}: expected label_values(selector, label), got {query}"
            )
        found.append(Expression(f"variable {name} (label {match.group(2)})", match.group(1)))
    return found


def variable_label(model: Mapping[str, Any], name: str) -> str:
    """The label a ``label_values`` variable lists."""
    var = variables(model)[name]
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    match = _LABEL_VALUES.match(query.strip())
    assert match is not None
    return match.group(2)
