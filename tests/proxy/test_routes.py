"""Route templates, id collapsing and the label bound (pure rules, table tests)."""

from __future__ import annotations

import pytest

from sidecar.proxy.headers import connection_tokens, request_headers, response_headers
from sidecar.proxy.routes import OTHER_LABEL, RouteLabeler, collapse_ids, method_label

ROUTES = ("/users/{id}", "/users/{id}/orders/{order}", "/files/{path*}", "/health")


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("/users/42", "/users/{id}"),
        ("/users/alice?x=1", "/users/{id}"),
        ("/users/42/orders/7", "/users/{id}/orders/{order}"),
        ("/files/a/b/c.txt", "/files/{path*}"),
        ("/files/", "/files/{path*}"),
        ("/health", "/health"),
        ("/users/42/", "/users/{id}/"),  # unmatched: template mode collapses the number
    ],
    ids=["one", "query", "two", "star", "star-empty", "literal", "unmatched"],
)
def test_route_templates(raw: str, label: str) -> None:
    assert RouteLabeler(ROUTES, "template", 100).label(raw) == label


@pytest.mark.parametrize(
    ("path", "collapsed"),
    [
        ("/orders/12345", "/orders/{id}"),
        ("/u/550e8400-e29b-41d4-a716-446655440000/x", "/u/{id}/x"),
        ("/blob/deadbeef12", "/blob/{id}"),
        ("/t/01HZX3KQ8M5VJ2W7TQ9N4P6R8S", "/t/{id}"),
        ("/day/2024-05-01", "/day/{id}"),
        ("/who/a@b.example", "/who/{id}"),
        ("/api/v1/users", "/api/v1/users"),
        ("/static/app.js", "/static/app.js"),
        ("/x/" + "a" * 65, "/x/{id}"),
    ],
    ids=["number", "uuid", "hex", "ulid", "date", "email", "names", "file", "long"],
)
def test_template_mode_collapses_ids(path: str, collapsed: str) -> None:
    assert collapse_ids(path) == collapsed


@pytest.mark.parametrize(
    ("mode", "label"),
    [("template", "/a/{id}"), ("raw", "/a/123"), ("other", OTHER_LABEL)],
)
def test_unmatched_modes(mode: str, label: str) -> None:
    assert RouteLabeler((), mode, 100).label("/a/123") == label


def test_labels_beyond_the_bound_become_other_and_are_counted() -> None:
    overflows: list[int] = []
    labeler = RouteLabeler((), "raw", 3, on_overflow=lambda: overflows.append(1))
    labels = [labeler.label(f"/p{i}") for i in range(5)]
    assert labels == ["/p0", "/p1", "/p2", OTHER_LABEL, OTHER_LABEL]
    assert labeler.label("/p1") == "/p1"  # known labels keep working
    assert labeler.label("/p4") == OTHER_LABEL  # cached overflow still counts
    assert len(overflows) == 3
    assert labeler.distinct == 3


@pytest.mark.parametrize(
    ("method", "label"), [("GET", "GET"), ("PATCH", "PATCH"), ("BREW", "_OTHER"), ("get", "_OTHER")]
)
def test_method_label(method: str, label: str) -> None:
    assert method_label(method) == label


def test_connection_tokens() -> None:
    assert connection_tokens([("Connection", "close, X-A"), ("connection", " x-b ")]) == {
        "close",
        "x-a",
        "x-b",
    }


@pytest.mark.parametrize(
    ("te", "expected"),
    [("trailers", "trailers"), ("gzip, trailers", "trailers"), ("gzip", None)],
)
def test_te_survives_only_as_trailers(te: str, expected: str | None) -> None:
    out = request_headers([("TE", te)], peer=None, scheme="http", forwarded=False)
    assert out.get("TE") == expected


def test_te_named_by_connection_is_dropped() -> None:
    out = request_headers(
        [("Connection", "TE"), ("TE", "trailers")], peer=None, scheme="http", forwarded=False
    )
    assert "TE" not in out


def test_response_framing_headers_are_dropped_and_order_kept() -> None:
    out = response_headers(
        [("A", "1"), ("Transfer-Encoding", "chunked"), ("Set-Cookie", "x"), ("Set-Cookie", "y")]
    )
    assert list(out.items()) == [("A", "1"), ("Set-Cookie", "x"), ("Set-Cookie", "y")]
