"""deploy/prometheus/rules.yaml: promtool accepts it and its unit tests pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.prometheus import PrometheusFactory, check_rules, poll, run_rule_tests

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "rules.yaml"
RULES_TESTS = RULES_DIR / "rules.test.yaml"
REQUIRED_ALERTS = {
    "SidecarHighErrorRatio",
    "SidecarHighLatencyP99",
    "SidecarUpstreamUnreachable",
    "SidecarScrapeFailing",
    "SidecarTargetsMissing",
    "SidecarOtlpPointsRejected",
    "SidecarCardinalityOverflow",
    "CausalityDlqDepthGrowing",
    "CausalityWebhookFailureRatio",
}


def _alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _alert_tests() -> list[dict[str, object]]:
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def test_promtool_check_rules_passes() -> None:
    done = check_rules(RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    done = run_rule_tests(RULES_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_issue_s_alerts_exist_with_runbooks() -> None:
    alerts = {str(rule["alert"]): rule for rule in _alerts()}
    assert set(alerts) >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert {"summary", "description"} <= set(annotations), name
        assert "Runbook:" in annotations["description"], name
        assert rule["labels"]["severity"] in ("warning", "critical"), name  # type: ignore[index]


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = _alert_tests()
    for name in {str(rule["alert"]) for rule in _alerts()}:
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no case where it is silent"


def test_a_real_prometheus_loads_and_evaluates_the_rules(
    prometheus_factory: PrometheusFactory,
) -> None:
    prom = prometheus_factory([], rule_files=[RULES])
    names = {str(group["name"]) for group in yaml.safe_load(RULES.read_text())["groups"]}

    def evaluated() -> list[dict[str, Any]] | None:
        groups = prom.rules()
        alerting = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
        done = alerting and all(r["health"] != "unknown" for r in alerting)
        return groups if done else None

    groups = poll(evaluated, 30, lambda: "every alerting rule evaluated once")
    assert {g["name"] for g in groups} == names
    unhealthy = [
        (r["name"], r.get("lastError"))
        for g in groups
        for r in g["rules"]
        if r["type"] == "alerting" and r["health"] != "ok"
    ]
    assert unhealthy == []
