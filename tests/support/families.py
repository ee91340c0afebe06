"""A `sidecar.unified.FamilySource` holding one self-rendering family, for tests that
watch where and when a render runs (tests/unified/test_render_clock.py,
tests/proxy/test_scrape_off_loop.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from prometheus_client.core import Metric


class SelfRendering(Protocol):
    """What the unified view needs of a family it renders itself."""

    name: str
    type: str

    def render(self, openmetrics: bool, out: list[str]) -> None: ...

    def to_metric(self) -> Metric: ...


F = TypeVar("F", bound=SelfRendering)


class OneFamilySource(Generic[F]):
    """A source with exactly one family, rendered by the family itself."""

    def __init__(self, family: F) -> None:
        self.family = family

    def families(self) -> Sequence[F]:
        return [self.family]

    def collect(self) -> list[Metric]:
        return [self.family.to_metric()]
