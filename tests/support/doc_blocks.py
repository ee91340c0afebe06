"""Fenced code blocks of the project's Markdown, with their file, line and marker.

Pure text handling, no I/O beyond reading the files: what the blocks are, which kind a YAML
block is, which logical commands a shell block holds, and its ports moved to the demo's.
The rules are documented at the top of tests/docs/test_examples.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.process import SidecarProcess

ROOT = Path(__file__).resolve().parents[2]
# The documentation whose examples must run (docs/**/*.md are globbed at collection).
DOC_FILES = (
    "README.md",
    "deploy/README.md",
    "helm/README.md",
    "bench/README.md",
    "SECURITY.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
)

SHELL_LANGS = frozenset({"sh", "bash", "shell", "console"})
YAML_LANGS = frozenset({"yaml", "yml"})
# Blocks that are not examples to run: checked only for what they are (json parses,
# python compiles), or not at all (text: synopses, layouts, output).
INERT_LANGS = frozenset({"text", "json", "python", "promql"})

YAML_KINDS = frozenset(
    {
        "sidecar-config",
        "kubernetes",
        "prometheus-config",
        "prometheus-rules",
        "helm-values",
        "compose",
    }
)
MARKER_KINDS = YAML_KINDS | {"otel-sdk-env", "not-runnable"}

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<kind>[a-z-]+)(?::\s*(?P<reason>.*?))?\s*-->\s*$")

# Top-level keys of the sidecar config (design section 4), and what marks the other kinds.
SIDECAR_SECTIONS = frozenset(
    {
        "service",
        "proxy",
        "admin",
        "ingest",
        "events",
        "merge",
        "export",
        "logging",
        "shutdown",
        "relabel",
    }
)
PROMETHEUS_CONFIG_KEYS = frozenset(
    {"global", "scrape_configs", "rule_files", "alerting", "remote_write", "remote_read"}
)


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: where it is, its language, its text and its marker (if any)."""

    path: str  # relative to ROOT
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None = None
    reason: str | None = None

    @property
    def where(self) -> str:
        """``file:line`` of the opening fence (the test id)."""
        return f"{self.path}:{self.line}"


def doc_files() -> list[Path]:
    """Every Markdown file whose examples are checked."""
    files = [ROOT / name for name in DOC_FILES if (ROOT / name).is_file()]
    return files + sorted((ROOT / "docs").rglob("*.md"))  # every page of the site


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with the ``<!-- example: ... -->`` marker before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    relative = path.relative_to(ROOT).as_posix()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        info = opening["info"].strip()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(lines[end])
            end += 1
        marker, reason = _marker_before(lines, index)
        lang = info.split()[0].lower() if info else ""
        found.append(Block(relative, index + 1, lang, "\n".join(body) + "\n", marker, reason))
        index = end + 1
    return found


def _marker_before(lines: list[str], fence_index: int) -> tuple[str | None, str | None]:
    """The marker comment on the last non-blank line before the fence, if there is one."""
    before = fence_index - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if before < 0:
        return None, None
    match = _MARKER.match(lines[before])
    if match is None:
        return None, None
    return match["kind"], match["reason"]


def all_blocks() -> list[Block]:
    """Every fenced block of every checked Markdown file."""
    return [block for path in doc_files() for block in blocks_of(path)]


def yaml_kind(block: Block) -> str | None:
    """The kind of a YAML block: its marker, else from its top-level keys (None: unknown)."""
    if block.marker in YAML_KINDS:
        return block.marker
    docs = [d for d in yaml.safe_load_all(block.text) if d is not None]
    if not docs or not all(isinstance(d, dict) for d in docs):
        return None
    keys = set().union(*(set(d) for d in docs))
    if all({"apiVersion", "kind"} <= set(d) for d in docs):
        return "kubernetes"
    if keys <= SIDECAR_SECTIONS:
        return "sidecar-config"
    if "services" in keys:
        return "compose"
    if keys == {"groups"}:
        return "prometheus-rules"
    if keys & PROMETHEUS_CONFIG_KEYS and keys <= PROMETHEUS_CONFIG_KEYS:
        return "prometheus-config"
    return None


@dataclass(frozen=True, slots=True)
class Command:
    """One logical command line of a shell block, and the output the doc shows for it."""

    line: int  # 1-based line in the Markdown file
    source: str  # continuation lines joined, trailing comment removed
    expected: str | None  # console: the lines after it; sh: a trailing `# "text"` comment
    exact: bool  # console output is compared whole; a comment is a substring


def commands_of(block: Block) -> list[Command]:
    """The logical commands of a shell block (see test_examples.py for the rules)."""
    lines = block.text.splitlines()
    console = block.lang == "console"
    commands: list[Command] = []
    index = 0
    while index < len(lines):
        raw = lines[index]
        start = index
        if console:
            if not raw.startswith("$ "):
                index += 1  # output of the previous command, collected below
                continue
            raw = raw[2:]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        source = raw.strip()
        while index + 1 < len(lines):
            if source.endswith("\\"):  # a continuation line
                source = source[:-1].rstrip() + " " + lines[index + 1].strip()
            elif _open_quote(source):  # a quoted string goes on, newline and all
                source += "\n" + lines[index + 1]
            else:
                break
            index += 1
        index += 1
        source, comment = split_comment(source)
        if console:
            output: list[str] = []
            while index < len(lines) and not lines[index].startswith("$ "):
                output.append(lines[index])
                index += 1
            while output and not output[-1].strip():
                output.pop()
            expected = "\n".join(output) if output else None
            commands.append(Command(block.line + 1 + start, source, expected, True))
            continue
        quoted = re.fullmatch(r'"(.*)"', comment.strip()) if comment else None
        expected = quoted.group(1) if quoted else None
        commands.append(Command(block.line + 1 + start, source, expected, False))
    return commands


def _scan(line: str) -> tuple[int | None, bool]:
    """(where a trailing shell comment starts, whether the line ends inside a quote)."""
    quote: str | None = None
    escaped = False
    for position, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return position, False
    return None, quote is not None


def _open_quote(line: str) -> bool:
    """Whether ``line`` ends inside a quoted string (it goes on on the next line)."""
    return _scan(line)[1]


def split_comment(line: str) -> tuple[str, str | None]:
    """``line`` without its trailing shell comment (a ``#`` outside quotes after a blank)."""
    position, _ = _scan(line)
    if position is None:
        return line.rstrip(), None
    return line[:position].rstrip(), line[position + 1 :]


# The ports the docs use, by what listens there in `causality-sidecar demo`.
DOC_PORTS = {8000: "proxy", 9464: "admin", 4318: "otlp", 8080: "app"}
_HOST_PORT = re.compile(r"(?<![\w.-])(?:localhost|127\.0\.0\.1):(\d+)\b")


def rewrite_ports(text: str, demo: SidecarProcess) -> str:
    """The docs' well-known host:port pairs moved to the demo's ports (on 127.0.0.1)."""

    def move(match: re.Match[str]) -> str:
        role = DOC_PORTS.get(int(match.group(1)))
        if role is None:
            return match.group(0)  # left alone: the example will fail, as it should
        return f"127.0.0.1:{demo.ports[role]}"

    return _HOST_PORT.sub(move, text)
