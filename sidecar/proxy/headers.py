"""Header policy: hop-by-hop removal both ways and the X-Forwarded-* headers.

RFC 9110 §7.6.1: ``Connection`` and every header it names are for one hop only, as are
the classic hop-by-hop headers below. ``TE`` is forwarded only as ``trailers``. Header
order and repeated headers (two ``Set-Cookie``) are kept; names keep their case.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, MultiMapping

__all__ = [
    "HOP_BY_HOP_HEADERS",
    "connection_tokens",
    "request_headers",
    "response_headers",
]

HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
X_FORWARDED_FOR = "X-Forwarded-For"
X_FORWARDED_PROTO = "X-Forwarded-Proto"
X_FORWARDED_HOST = "X-Forwarded-Host"

Pairs = Iterable[tuple[str, str]]


def connection_tokens(headers: Pairs) -> frozenset[str]:
    """Lower-cased header names listed in every ``Connection`` header."""
    return frozenset(_tokens(value for name, value in headers if name.lower() == "connection"))


def _end_to_end(headers: Pairs | MultiMapping[str]) -> CIMultiDict[str]:
    """Copy every end-to-end header in order; ``TE`` survives only as ``trailers``.

    The common case is one C-level copy and a few lookups: hop-by-hop headers (and those
    ``Connection`` names) are popped from the copy, which keeps the others' order. Only a
    ``TE`` header, which may have to stay in its place as ``trailers``, takes the loop.
    """
    out: CIMultiDict[str] = CIMultiDict(headers)
    if "TE" in out:
        return _filtered(list(out.items()))
    if "Connection" in out:
        for token in _tokens(out.getall("Connection")):
            out.popall(token, None)
    for name in HOP_BY_HOP_HEADERS:
        if name in out:
            out.popall(name)
    return out


def _tokens(values: Iterable[str]) -> set[str]:
    return {t.strip().lower() for value in values for t in value.split(",") if t.strip()}


def _filtered(items: list[tuple[str, str]]) -> CIMultiDict[str]:
    """`_end_to_end` one header at a time (a ``TE`` header is among them)."""
    named = connection_tokens(items)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in items:
        lower = name.lower()
        if lower in HOP_BY_HOP_HEADERS or lower in named:
            if lower == "te" and "trailers" in value.lower() and "te" not in named:
                out.add(name, "trailers")
            continue
        out.add(name, value)
    return out


def request_headers(
    headers: Pairs | MultiMapping[str],
    *,
    peer: str | None,
    scheme: str,
    forwarded: bool,
) -> CIMultiDict[str]:
    """Headers to send upstream for a client request (``Host`` is kept as sent).

    Args:
        headers: the client's headers, in order, repeated names repeated.
        peer: the client's IP address (``None`` when unknown, e.g. a Unix socket).
        scheme: the scheme the client used (``http``).
        forwarded: append ``X-Forwarded-For``; set ``-Proto`` and ``-Host`` when absent.
    """
    out = _end_to_end(headers)
    if forwarded:
        add_forwarded(out, peer=peer, scheme=scheme)
    return out


def add_forwarded(out: CIMultiDict[str], *, peer: str | None, scheme: str) -> None:
    """Append the peer to ``X-Forwarded-For``; set ``-Proto`` and ``-Host`` when absent."""
    if peer is not None:
        previous = out.getall(X_FORWARDED_FOR, [])
        if previous:
            out.popall(X_FORWARDED_FOR)
            out.add(X_FORWARDED_FOR, ", ".join([*previous, peer]))
        else:
            out.add(X_FORWARDED_FOR, peer)
    if X_FORWARDED_PROTO not in out:
        out.add(X_FORWARDED_PROTO, scheme)
    host = out.get("Host")
    if host is not None and X_FORWARDED_HOST not in out:
        out.add(X_FORWARDED_HOST, host)


def response_headers(headers: Pairs | MultiMapping[str]) -> CIMultiDict[str]:
    """Headers to send the client for an upstream response (framing is re-done by us)."""
    return _end_to_end(headers)
