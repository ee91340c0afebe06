"""Tests of the Causality event contract and the event-aware metrics (issue 5)."""
