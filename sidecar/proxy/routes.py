"""Bounded metric labels: the ``path`` label from route templates, and the ``method`` label.

``path`` is never the raw path. A request path is matched against ``proxy.routes``
templates (``/users/{id}`` matches one segment, ``/files/{path*}`` the rest of the path);
an unmatched path follows ``proxy.unmatched_routes``: ``template`` collapses id-like
segments (numbers, UUIDs, long hex, long mixed tokens) to ``{id}``, ``raw`` keeps the
path, ``other`` names it ``__other__``. Whatever the mode, at most ``max_route_labels``
distinct values are ever handed out; later new values become ``__other__`` and the
overflow callback is told (it counts ``sidecar_cardinality_overflow_total``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["OTHER_LABEL", "STANDARD_METHODS", "RouteLabeler", "compile_template", "method_label"]

OTHER_LABEL = "__other__"
ID_LABEL = "{id}"
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
PATH_CACHE_MAX = 8192  # raw paths seen recently; cleared whole when full (never grows past it)

_PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
_ID_SEGMENT_RES = (
    re.compile(r"^[0-9]+$"),  # numbers
    re.compile(
        r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
    ),
    re.compile(r"^(?=.*[0-9])[0-9a-fA-F]{8,}$"),  # hex digests, object ids
    re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_-]{16,}$"),  # tokens, ULIDs, base64url
    re.compile(r"^[0-9][0-9.,:_-]*$"),  # dates, versions-as-ids, decimal ids with separators
    re.compile(r"^[^@/]+@[^@/]+$"),  # e-mail addresses
)
_MAX_SEGMENT = 64  # a segment longer than this is an id whatever it looks like


def method_label(method: str) -> str:
    """The ``method`` label: a standard method, else ``_OTHER`` (bounded)."""
    return method if method in STANDARD_METHODS else "_OTHER"


def compile_template(template: str) -> re.Pattern[str]:
    """Compile ``/users/{id}`` (one segment) or ``/files/{path*}`` (the rest) to a regex."""
    out: list[str] = []
    position = 0
    for match in _PARAM_RE.finditer(template):
        out.append(re.escape(template[position : match.start()]))
        out.append(".*" if match.group(2) else "[^/]+")
        position = match.end()
    out.append(re.escape(template[position:]))
    return re.compile("^" + "".join(out) + "$")


def is_id_segment(segment: str) -> bool:
    """True when a path segment looks like an identifier rather than a name."""
    return len(segment) > _MAX_SEGMENT or any(r.match(segment) for r in _ID_SEGMENT_RES)


def collapse_ids(path: str) -> str:
    """Replace each id-like segment of ``path`` with ``{id}``."""
    return "/".join(ID_LABEL if is_id_segment(s) else s for s in path.split("/"))


@dataclass(frozen=True, slots=True)
class _Route:
    template: str
    pattern: re.Pattern[str]


class RouteLabeler:
    """Maps raw request paths to a bounded set of ``path`` label values."""

    def __init__(
        self,
        routes: Sequence[str],
        unmatched: str,
        max_labels: int,
        on_overflow: Callable[[], None] = lambda: None,
    ) -> None:
        self._routes = tuple(_Route(t, compile_template(t)) for t in routes)
        self._unmatched = unmatched
        self._max_labels = max_labels
        self._on_overflow = on_overflow
        self._labels: set[str] = set()
        self._cache: dict[str, tuple[str, bool]] = {}

    def label(self, raw_path: str) -> str:
        """The ``path`` label for a request target (query string ignored)."""
        cached = self._cache.get(raw_path)
        if cached is None:
            cached = self._bound(self._classify(raw_path.partition("?")[0]))
            if len(self._cache) >= PATH_CACHE_MAX:
                self._cache.clear()
            self._cache[raw_path] = cached
        label, overflowed = cached
        if overflowed:
            self._on_overflow()
        return label

    @property
    def distinct(self) -> int:
        """How many distinct labels have been handed out (excluding ``__other__``)."""
        return len(self._labels)

    def _classify(self, path: str) -> str:
        for route in self._routes:
            if route.pattern.match(path):
                return route.template
        if self._unmatched == "raw":
            return path
        if self._unmatched == "other":
            return OTHER_LABEL
        return collapse_ids(path)

    def _bound(self, label: str) -> tuple[str, bool]:
        """(label, overflowed): a new label beyond the limit becomes ``__other__``."""
        if label == OTHER_LABEL or label in self._labels:
            return label, False
        if len(self._labels) >= self._max_labels:
            return OTHER_LABEL, True
        self._labels.add(label)
        return label, False
