"""`sidecar.runtime.tune`: process-wide, so checked in a fresh interpreter of its own."""

from __future__ import annotations

import json
import subprocess
import sys

from sidecar.runtime import GEN0_THRESHOLD, SWITCH_INTERVAL_S

SCRIPT = """
import gc, json, sys
from sidecar.runtime import tune
tuned = tune()
print(json.dumps({
    "frozen": gc.get_freeze_count(), "reported": tuned.frozen_objects,
    "threshold": gc.get_threshold(), "before": tuned.thresholds_before,
    "interval": sys.getswitchinterval(), "interval_before": tuned.switch_interval_before,
}))
"""


def test_tune_freezes_what_exists_and_shortens_the_gil_interval() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    seen = json.loads(out)
    assert seen["frozen"] == seen["reported"] > 1000  # the imported modules' objects
    assert seen["threshold"] == [GEN0_THRESHOLD, *seen["before"][1:]]
    assert seen["interval"] == SWITCH_INTERVAL_S
    assert seen["interval_before"] == 0.005  # CPython's default, changed only by tune()
