"""Fixtures of tests/operations: a real Prometheus (tests/support/prometheus.py)."""

from tests.support.prometheus import prometheus_factory

__all__ = ["prometheus_factory"]
