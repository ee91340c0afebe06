"""``relabel:`` is validated when the config is loaded: exit 2, and the key path named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.config import ConfigError, config_from_dict, load_config

ERRORS: list[tuple[str, Any, str]] = [
    ("not a list", {"action": "drop"}, "relabel: expected a list"),
    ("entry not a mapping", ["drop"], "relabel[0]: expected a mapping"),
    ("unknown key", [{"action": "drop", "match": {"a": "b"}, "regexp": "x"}],
     "relabel[0].regexp: unknown key"),
    ("unknown action", [{"action": "hashmod", "source_labels": ["a"]}],
     "relabel[0].action: expected one of replace, keep, drop, labeldrop, labelkeep, labelmap"),
    ("replace without target", [{"source_labels": ["a"]}],
     "relabel[0].target_label: is required for action replace"),
    ("bad target label", [{"source_labels": ["a"], "target_label": "a-b"}],
     "relabel[0].target_label: 'a-b' is not a label name or template"),
    ("keep without a condition", [{"action": "keep"}],
     "relabel[0].source_labels: action keep needs source_labels or match"),
    ("bad source label name", [{"action": "drop", "source_labels": ["a.b"]}],
     "relabel[0].source_labels: 'a.b' is not a label name"),
    ("source_labels not a list", [{"action": "drop", "source_labels": "a"}],
     "relabel[0].source_labels: expected a list of strings"),
    ("backreference", [{"action": "drop", "source_labels": ["a"], "regex": "(a)\\1"}],
     "relabel[0].regex: backreference \\1 is not supported (RE2 has none)"),
    ("lookahead", [{"action": "drop", "source_labels": ["a"], "regex": "a(?=b)"}],
     "relabel[0].regex: lookahead (?=...) is not supported"),
    ("negative lookbehind", [{"action": "drop", "source_labels": ["a"], "regex": "(?<!x)a"}],
     "relabel[0].regex: negative lookbehind (?<!...) is not supported"),
    ("named backreference", [{"action": "drop", "source_labels": ["a"],
                              "regex": "(?P<x>a)(?P=x)"}],
     "relabel[0].regex: named backreference (?P=...) is not supported"),
    ("possessive", [{"action": "drop", "source_labels": ["a"], "regex": "a++"}],
     "relabel[0].regex: possessive quantifier ++ is not RE2"),
    ("atomic group", [{"action": "drop", "source_labels": ["a"], "regex": "(?>a)"}],
     "relabel[0].regex: atomic group (?>...) is not supported"),
    ("not a regex", [{"action": "drop", "source_labels": ["a"], "regex": "(a"}],
     "relabel[0].regex: invalid regex '(a'"),
    ("regex in match", [{"action": "drop", "match": {"__name__": "go_(?!x)"}}],
     "relabel[0].match.__name__: negative lookahead (?!...) is not supported"),
    ("match not a mapping", [{"action": "drop", "match": ["go_.*"]}],
     "relabel[0].match: expected a mapping of label names to regexes"),
    ("match label name", [{"action": "drop", "match": {"a-b": "x"}}],
     "relabel[0].match: 'a-b' is not a label name"),
    ("unknown source", [{"action": "drop", "match": {"a": "x"}, "source": "app"}],
     "relabel[0].source: expected one of proxy, ingest, merge, sidecar; got 'app'"),
    ("labeldrop with source_labels", [{"action": "labeldrop", "regex": "a", "source_labels": ["a"]}],
     "relabel[0].source_labels: is not used by action labeldrop"),
    ("labelkeep with replacement", [{"action": "labelkeep", "regex": "a", "replacement": "b"}],
     "relabel[0].replacement: is not used by action labelkeep"),
    ("labelmap bad replacement", [{"action": "labelmap", "regex": "(a)", "replacement": "x-$1"}],
     "relabel[0].replacement: 'x-$1' is not a label name or template"),
    ("keep with target_label", [{"action": "keep", "match": {"a": "b"}, "target_label": "c"}],
     "relabel[0].target_label: is not used by action keep"),
    ("second entry named", [{"action": "drop", "match": {"a": "b"}}, {"action": "nope"}],
     "relabel[1].action: expected one of"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_rules_name_the_key(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"relabel": raw})
    assert str(caught.value).startswith(message), str(caught.value)


def test_check_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("relabel:\n  - {action: drop, source_labels: [a], regex: '(a)\\1'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "relabel[0].regex: backreference" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_issues_rules_load_and_round_trip(tmp_path: Path) -> None:
    rules = [
        {"action": "drop", "match": {"__name__": "go_.*"}},
        {"action": "keep", "source": "merge", "match": {"__name__": "app_.*|http_.*"}},
        {"action": "labeldrop", "regex": "otel_scope_.*"},
        {"action": "replace", "source_labels": ["service_name"], "target_label": "job"},
    ]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"relabel": rules}))
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)["relabel"]
    assert [r["action"] for r in printed] == ["drop", "keep", "labeldrop", "replace"]
    assert printed[1]["source"] == "merge"
    assert printed[3]["regex"] == "(.*)"
    assert printed[3]["replacement"] == "$1"
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump({"relabel": printed}))
    assert load_config(again, env={}).relabel == load_config(path, env={}).relabel
