"""The merge targets as sources of the unified view, fetched afresh for every scrape.

`MergeScraper` owns one pooled `ClientSession` for every target. `MergeScraper.fetch`
scrapes all targets concurrently, each bounded by its own ``timeout`` and by the
scraper's budget (``X-Prometheus-Scrape-Timeout-Seconds`` minus `margin`), counts each
outcome in ``sidecar_merge_scrapes_total{target,result}`` and returns one source per
target that answered, in configuration order: `sidecar.unified.UnifiedCollector`
places them after the sidecar's own and the ingested families and applies design §9.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

import aiohttp
from opentelemetry.metrics import Counter, Meter
from prometheus_client.core import Metric

from sidecar.config import MergeTarget, is_loopback_host
from sidecar.gzipjoin import GzipMember
from sidecar.known_labels import zeroed
from sidecar.merge.fetch import ACCEPT, TEXT_ACCEPT, Result, Scrape, accept_for, fetch_target
from sidecar.merge.rawtext import RawFamily
from sidecar.negotiation import Escaping

__all__ = [
    "RECENT_S",
    "FetchedFamilies",
    "MergeScraper",
    "margin",
    "natives_dropped_counter",
    "scrapes_counter",
]

MIN_MARGIN = 0.1  # seconds kept for rendering and sending the reply, at least
MAX_MARGIN = 1.0  # ... and at most
MARGIN_FRACTION = 0.1
MIN_BUDGET = 0.05  # a target always gets a chance, however tight the scraper is
POOL_LIMIT_PER_HOST = 4  # concurrent scrapes of one target (two Prometheus replicas, export)
KEEPALIVE = 3.0  # shorter than most servers' idle timeout, like proxy.upstream_keepalive
RECENT_S = 60.0  # a target's last scrape younger than this answers the status pages
# a target whose last reply was at most this big is asked without gzip: compressing on
# the fly (client_golang: ~1 ms for node_exporter's 57 kB) costs it more than sending
# the plain body over loopback; a bigger one is asked for gzip, which a pre-compressed
# body answers at once and `sidecar.gzipjoin` can pass on
SMALL_REPLY = 256 * 1024
# a target on loopback whose body the sidecar rewrites anyway (configured ``labels``, or
# ``relabel:`` rules that change its series: its gzip member cannot be passed on) is
# asked without gzip: its compression would be undone and done again for nothing
# (prometheus_client gzips at level 9: ~50 ms for 1.9 MB); a target marked so is asked
# for gzip again after this long, in case the rules no longer change it
REWRITTEN_RECHECK_S = 300.0


TargetKey = tuple[str, str]  # (name, url)


def _key(target: MergeTarget) -> TargetKey:
    return (target.name, target.url)


def on_loopback(url: str) -> bool:
    """The URL's host is this machine's loopback (``localhost``, 127.0.0.0/8, ``::1``)."""
    return is_loopback_host(urlsplit(url).hostname or "")


def natives_dropped_counter(meter: Meter) -> Counter:
    """``sidecar_merge_native_histograms_dropped_total{target}``: native histogram series
    of a target's protobuf reply left out of an answer that was not protobuf."""
    return meter.create_counter(
        "sidecar.merge.native_histograms.dropped",
        description="Native histogram series of merge targets left out of non-protobuf answers",
    )


def scrapes_counter(meter: Meter) -> Counter:
    """``sidecar_merge_scrapes_total{target,result}``."""
    return meter.create_counter(
        "sidecar.merge.scrapes",
        description="Scrapes of merge targets, by target and result",
    )


def margin(scrape_timeout: float) -> float:
    """Time kept back from the scraper's timeout: 10 %, between 0.1 s and 1 s."""
    return min(max(scrape_timeout * MARGIN_FRACTION, MIN_MARGIN), MAX_MARGIN)


def budget(target: MergeTarget, scrape_timeout: float | None) -> float:
    """How long ``target`` may take in a scrape whose scraper waits ``scrape_timeout``."""
    if scrape_timeout is None:
        return target.timeout
    return max(min(target.timeout, scrape_timeout - margin(scrape_timeout)), MIN_BUDGET)


class FetchedFamilies:
    """One target's families for one scrape: a `sidecar.unified.FamilySource`."""

    relabel_source = "merge"  # what ``relabel:`` rules name it (``source: merge``)

    def __init__(self, scrape: Scrape, rewritten: Callable[[], None] | None = None) -> None:
        self.scrape = scrape
        self._rewritten = rewritten

    def rewritten(self) -> None:
        """The answer could not end with the target's gzip member as it came (a
        `sidecar.unified.PassThroughSource`): the scraper may stop asking for gzip."""
        if self._rewritten is not None:
            self._rewritten()

    def families(self) -> Sequence[RawFamily | Metric]:
        """The parsed families (configured labels added); raw ones render themselves."""
        return self.scrape.families

    def passthrough(self, openmetrics: bool) -> GzipMember | None:
        """The body as the target sent it, gzipped, when it is in that format (a
        `sidecar.unified.PassThroughSource`)."""
        return self.scrape.member if self.scrape.openmetrics == openmetrics else None

    def collect(self) -> Iterable[Metric]:
        """prometheus_client's collector protocol."""
        for family in self.scrape.families:
            yield family.to_metric() if isinstance(family, RawFamily) else family


class MergeScraper:
    """Scrapes every ``merge.targets`` entry once per call to `fetch`."""

    def __init__(
        self,
        targets: Sequence[MergeTarget],
        scrapes: Counter,
        *,
        session: aiohttp.ClientSession | None = None,
        natives_dropped: Counter | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self._scrapes = scrapes
        self._natives_dropped = natives_dropped
        for target in self.targets:  # every outcome at 0 from the start
            zeroed(scrapes, "result", [r.value for r in Result], {"target": target.name})
            if natives_dropped is not None:
                natives_dropped.add(0, {"target": target.name})
        self._session = session
        self._owns_session = session is None
        # what the scrapes learnt, per target (name and URL: a reload may change either)
        self._last: dict[TargetKey, tuple[float, Scrape]] = {}  # (when, last success)
        self._text_first: set[TargetKey] = set()  # its OpenMetrics does not parse
        self._small: set[TargetKey] = set()  # its last reply was small: no gzip
        # when its body was last found rewritten (a loopback one: no gzip for a while)
        self._rewritten: dict[TargetKey, float] = {}

    def _pooled_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit_per_host=POOL_LIMIT_PER_HOST, keepalive_timeout=KEEPALIVE
            )
            # gzip replies are inflated by sidecar.merge.fetch; the total timeout is ours;
            # a target's cookies are neither kept nor sent back (and cost ~0.05 ms a scrape)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def scrape(
        self,
        scrape_timeout: float | None = None,
        *,
        text: bool = False,
        protobuf: bool = False,
        escaping: Escaping = Escaping.UNDERSCORES,
    ) -> list[Scrape]:
        """Every target's outcome, in configuration order; each outcome is counted.
        ``text``: the scraper wants text 0.0.4, so targets are asked for it first;
        ``protobuf``: it wants protobuf, so targets are asked for that first;
        ``escaping``: the scraper's offer, passed on (`accept_for`)."""
        if not self.targets:  # none (yet: a reload may add some): no session to open
            return []
        accept = accept_for(protobuf=protobuf, text=text, escaping=escaping)
        text_accept = accept_for(protobuf=False, text=True, escaping=escaping)
        return await self._scrape(self.targets, scrape_timeout, accept, text_accept)

    async def _scrape(
        self,
        targets: Sequence[MergeTarget],
        scrape_timeout: float | None,
        accept: str,
        text_accept: str = TEXT_ACCEPT,
    ) -> list[Scrape]:
        session = self._pooled_session()
        scrapes = await asyncio.gather(
            *(
                fetch_target(
                    session,
                    t,
                    budget(t, scrape_timeout),
                    text_accept if _key(t) in self._text_first else accept,
                    gzip=self._gzip(t),
                )
                for t in targets
            )
        )
        now = time.monotonic()
        for s in scrapes:
            self._scrapes.add(1, {"target": s.target.name, "result": s.result.value})
            if s.natives_dropped and self._natives_dropped is not None:
                self._natives_dropped.add(s.natives_dropped, {"target": s.target.name})
            if s.result is Result.SUCCESS:
                self._last[_key(s.target)] = (now, s)
                if s.size <= SMALL_REPLY:
                    self._small.add(_key(s.target))
                else:
                    self._small.discard(_key(s.target))
            if s.text_first:
                self._text_first.add(_key(s.target))  # its text from now on
        return scrapes

    def _gzip(self, target: MergeTarget) -> bool:
        """Whether to ask ``target`` for gzip: not when its last reply was small, nor
        when it is on loopback and its body is rewritten anyway (`REWRITTEN_RECHECK_S`)."""
        key = _key(target)
        if key in self._small:
            return False
        if not on_loopback(target.url):
            return True
        if target.labels:  # every series gets them: the member is never passed on
            return False
        marked = self._rewritten.get(key)
        return marked is None or time.monotonic() - marked >= REWRITTEN_RECHECK_S

    def _mark_rewritten(self, key: TargetKey) -> None:
        self._rewritten[key] = time.monotonic()

    async def recent(self, max_age: float = RECENT_S) -> dict[str, Scrape]:
        """Each target's last successful scrape, by target name (for the status pages).

        A target without one in the last ``max_age`` seconds is scraped now, within its
        own ``timeout`` (and counted as any scrape); one that still fails is left out.
        """
        now = time.monotonic()
        stale = [
            t for t in self.targets if now - self._last.get(_key(t), (-math.inf,))[0] > max_age
        ]
        if stale:
            await self._scrape(stale, None, ACCEPT)
        current = {_key(t) for t in self.targets}  # a reload may have removed some
        return {key[0]: last for key, (_, last) in self._last.items() if key in current}

    async def fetch(
        self,
        scrape_timeout: float | None = None,
        *,
        text: bool = False,
        protobuf: bool = False,
        escaping: Escaping = Escaping.UNDERSCORES,
    ) -> list[FetchedFamilies]:
        """One source per target that answered with usable metrics (failures are skipped)."""
        scrapes = await self.scrape(scrape_timeout, text=text, protobuf=protobuf, escaping=escaping)
        return [
            FetchedFamilies(s, functools.partial(self._mark_rewritten, _key(s.target)))
            for s in scrapes
            if s.result is Result.SUCCESS
        ]

    async def close(self) -> None:
        """Close the pooled session (when this scraper created it)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
