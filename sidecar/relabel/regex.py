"""Relabel regexes: Prometheus's (RE2, fully anchored) run by Python's `re`.

google-re2 is not a dependency, so a pattern is compiled by `re` after a check that it
uses only what RE2 also accepts with the same meaning: `check_re2` refuses
backreferences, lookarounds, atomic groups, possessive quantifiers, conditionals and
the escapes whose meaning differs (``\\Z``). A pattern is anchored at both ends, as
Prometheus anchors it (``^(?:regex)$``), by matching it with ``fullmatch``.
"""

from __future__ import annotations

import contextlib
import functools
import re

__all__ = ["anchored", "check_re2", "expand"]

# (?=, (?!, (?<=, (?<! lookarounds; (?> atomic; (?( conditional; (?P= named backreference;
# (?#comment) is Python-only too
_GROUP_FORBIDDEN = (
    ("(?=", "lookahead (?=...)"),
    ("(?!", "negative lookahead (?!...)"),
    ("(?<=", "lookbehind (?<=...)"),
    ("(?<!", "negative lookbehind (?<!...)"),
    ("(?>", "atomic group (?>...)"),
    ("(?(", "conditional (?(...)...)"),
    ("(?P=", "named backreference (?P=...)"),
    ("(?#", "comment group (?#...)"),
)
_POSSESSIVE = frozenset("*+?}")


def check_re2(pattern: str) -> None:
    """Refuse what RE2 (Prometheus's regex engine) would refuse or read differently.

    Raises:
        ValueError: naming the construct (``backreference \\1 is not RE2``), or `re`'s
            own error for a pattern that is no regex at all.
    """
    i, n, in_class = 0, len(pattern), False
    while i < n:
        char = pattern[i]
        if char == "\\":
            nxt = pattern[i + 1] if i + 1 < n else ""
            if not in_class and nxt.isdigit() and nxt != "0":
                raise ValueError(f"backreference \\{nxt} is not supported (RE2 has none)")
            if nxt == "Z":
                raise ValueError("\\Z is not RE2 (use \\z or $; patterns are anchored anyway)")
            if nxt == "g" and not in_class:
                raise ValueError("\\g<...> is not RE2")
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
            i += 1
            continue
        if char == "[":
            in_class = True
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":  # a literal ] first in a class
                i += 1
            continue
        if char == "(":
            for prefix, what in _GROUP_FORBIDDEN:
                if pattern.startswith(prefix, i):
                    raise ValueError(f"{what} is not supported (RE2 has none)")
        if char == "+" and i > 0 and pattern[i - 1] in _POSSESSIVE and not _escaped(pattern, i - 1):
            raise ValueError(f"possessive quantifier {pattern[i - 1]}+ is not RE2")
        i += 1
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


def _escaped(pattern: str, at: int) -> bool:
    slashes = 0
    while at - 1 - slashes >= 0 and pattern[at - 1 - slashes] == "\\":
        slashes += 1
    return slashes % 2 == 1


@functools.lru_cache(maxsize=1024)
def anchored(pattern: str) -> re.Pattern[str]:
    """The pattern as Prometheus runs it: matched against the whole value (`fullmatch`)."""
    return re.compile(f"(?:{pattern})")


_TEMPLATE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def expand(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.Expand``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; a group
    that does not exist (or did not take part) is the empty string, and ``$1x`` names
    the group ``1x`` (so it is empty: write ``${1}x``)."""
    if "$" not in template:
        return template
    out = []
    for literal, group in _parts(template):
        if group is None:
            out.append(literal)
            continue
        with contextlib.suppress(IndexError):  # no such group: nothing
            out.append(match.group(group) or "")
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def _parts(template: str) -> tuple[tuple[str, int | str | None], ...]:
    """The template cut into literals and group references (parsed once)."""
    parts: list[tuple[str, int | str | None]] = []
    at = 0
    for found in _TEMPLATE.finditer(template):
        if found.start() > at:
            parts.append((template[at : found.start()], None))
        name = found.group(1) or found.group(2)
        if name is None:
            parts.append(("$", None))
        else:
            parts.append(("", int(name) if name.isdigit() else name))
        at = found.end()
    if at < len(template):
        parts.append((template[at:], None))
    return tuple(parts)
