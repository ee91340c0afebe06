"""Properties of the proxy's header policy (`sidecar.proxy.headers`) over random header lists.

- Nothing hop-by-hop survives, in either direction: no classic hop-by-hop header and no
  header any ``Connection`` header names (``TE: trailers`` is the one documented
  exception, and only when ``Connection`` does not name TE).
- End-to-end headers keep their order, repeats, name case and values.
- With forwarding on, exactly one X-Forwarded-For that ends with the peer, whatever
  ``Connection`` names (the sidecar's value cannot be stripped); X-Forwarded-Proto and
  -Host are the client's when it sent end-to-end ones, else the sidecar's (SECURITY.md:
  the app must not trust them further than its ingress does).
- Filtering twice changes nothing.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.proxy.headers import (
    HOP_BY_HOP_HEADERS,
    connection_tokens,
    request_headers,
    response_headers,
)

TOKEN_CHARS = st.characters(
    codec="ascii", categories=("L", "N"), include_characters="-_!#$%&'*+.^`|~"
)
NAMES = st.one_of(
    st.sampled_from(
        sorted(
            HOP_BY_HOP_HEADERS
            | {
                "Host",
                "X-Forwarded-For",
                "X-Forwarded-Proto",
                "X-Forwarded-Host",
                "Authorization",
                "Cookie",
                "Set-Cookie",
                "Content-Type",
                "X-Id",
            }
        )
    ).map(lambda n: n if len(n) % 2 else n.upper()),
    st.text(TOKEN_CHARS, min_size=1, max_size=12),
)
VALUES = st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=20)


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Headers in order, some repeated, with 0-2 Connection headers naming others."""
    headers = draw(st.lists(st.tuples(NAMES, VALUES), max_size=12))
    for _ in range(draw(st.integers(0, 2))):
        named = draw(
            st.lists(
                st.one_of(NAMES, st.sampled_from([n for n, _ in headers] or ["x"])), max_size=4
            )
        )
        spacing = draw(st.sampled_from([",", ", ", " ,  "]))
        headers.insert(draw(st.integers(0, len(headers))), ("Connection", spacing.join(named)))
    return headers


def _hop(headers: list[tuple[str, str]]) -> frozenset[str]:
    return HOP_BY_HOP_HEADERS | connection_tokens(headers)


def _expected_end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    hop = _hop(headers)
    return [(n, v) for n, v in headers if n.lower() not in hop]


@settings(max_examples=300)
@given(header_lists())
def test_response_headers_keep_exactly_the_end_to_end_ones_in_order(headers) -> None:
    out = list(response_headers(headers).items())
    kept = [(n, v) for n, v in out if not (n.lower() == "te" and v == "trailers")]
    assert kept == _expected_end_to_end(headers)


@settings(max_examples=300)
@given(header_lists(), st.booleans())
def test_request_headers_drop_hop_by_hop_and_add_forwarded_once(headers, forwarded: bool) -> None:
    out = list(
        request_headers(headers, peer="10.1.2.3", scheme="http", forwarded=forwarded).items()
    )
    names = [n.lower() for n, _ in out]
    hop = _hop(headers)
    for name, value in out:
        lower = name.lower()
        if lower == "te":
            assert value == "trailers"
            assert "te" not in connection_tokens(headers)
            continue
        assert lower not in HOP_BY_HOP_HEADERS
        if lower not in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"):
            assert lower not in hop
    if forwarded:
        sent = [n.lower() for n, _ in _expected_end_to_end(headers)]
        assert names.count("x-forwarded-for") == 1
        xff = next(v for n, v in out if n.lower() == "x-forwarded-for")
        assert xff.split(",")[-1].strip() == "10.1.2.3"
        # -Proto and -Host are set only when the client (or its ingress) sent none
        assert names.count("x-forwarded-proto") == max(1, sent.count("x-forwarded-proto"))
        own_host = 1 if "host" in sent else 0
        assert names.count("x-forwarded-host") == (sent.count("x-forwarded-host") or own_host)
    else:
        others = [(n, v) for n, v in out if n.lower() != "te"]
        assert others == _expected_end_to_end(headers)


@settings(max_examples=300)
@given(header_lists())
def test_filtering_twice_changes_nothing(headers) -> None:
    once = list(response_headers(headers).items())
    assert list(response_headers(once).items()) == once
