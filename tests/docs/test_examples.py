"""Every example in the docs runs: docs that lie are bugs.

How to write an example so this test can check it (CONTRIBUTING)
================================================================

The checked files are README.md, docs/*.md, deploy/README.md, helm/README.md,
bench/README.md, SECURITY.md, CONTRIBUTING.md and CHANGELOG.md. Every fenced block needs
an info string (its language):

- ``text`` for what is not an example (a synopsis, a layout, output); ``json`` blocks must
  parse, ``python`` blocks must compile.
- ``yaml`` blocks are checked by the real tool for their kind. The kind comes from the
  top-level keys: only design section 4 sections (``proxy:``, ``ingest:``, ...) ->
  ``sidecar-config``, run through ``causality-sidecar check-config`` (exit 0);
  ``apiVersion`` + ``kind`` -> ``kubernetes``, validated strictly against the Kubernetes
  1.29 schema (kubernetes-validate); ``scrape_configs``/``global``/``rule_files`` ->
  ``prometheus-config``, ``promtool check config`` (Debian's promtool has no Kubernetes
  service discovery, so ``kubernetes_sd_configs`` is swapped for ``file_sd_configs`` first,
  as tests/deploy/test_prometheus_configs.py does); ``groups`` -> ``prometheus-rules``,
  ``promtool check rules``; ``services`` -> ``compose``, parsed and checked (build context
  and Dockerfile, ``network_mode: service:X``, ``depends_on``, port syntax, bind mounts,
  named volumes; the sidecar service's ``command`` runs with the local CLI on free
  ports). Helm values cannot be told apart by their keys: mark them. A marker is an HTML
  comment on the last non-blank line before the fence:
  ``<!-- example: helm-values -->`` (rendered with the chart by the real Helm engine, over
  the one required value) or any kind above to override the guess.
- ``sh``, ``bash``, ``shell`` blocks are run command by command (a trailing ``\\``
  continues a line; comment lines are skipped). A trailing comment that is only a quoted
  string, ``# "# EOF"``, is text the command's output must contain. ``console`` blocks:
  lines starting with ``$ `` are commands, the lines after one are its exact output.
  What each command does here:

  - ``curl``: run by bash (pipes and all) against one ``causality-sidecar demo`` started for
    this module on free ports; ``localhost``/``127.0.0.1`` ports 8000 (proxy), 9464 (admin),
    4318 (OTLP ingest) and 8080 (demo app) are rewritten to the demo's. In ``sh`` blocks
    curl gets ``--fail-with-body`` (a 4xx/5xx fails the example); in ``console`` blocks
    the shown output decides.
  - ``causality-sidecar ...`` / ``python -m sidecar ...``: run for real; ``run`` and
    ``demo`` are started on free ports, must become ready and exit 0 on SIGTERM.
  - ``make TARGET [VAR=value]``: ``make -n`` with the same words must succeed (the target
    exists; nothing long runs).
  - ``promtool ...``: run for real.
  - ``docker``/``podman`` ``build``/``tag``/``push``/``run``: the flags must be ones we know
    and the image references valid (``build``: the context has the Dockerfile, every
    ``--build-arg`` is an ``ARG`` of it). ``run`` of the sidecar image runs its arguments
    (default ``run``) with the local CLI on free ports; a ``-v`` mount whose source is not
    in the repository (your own config file) is replaced by an empty config (the defaults).
    ``podman pod create``: known flags, port pairs; ``run --pod NAME`` is a run like the
    others. The image itself is built and run with podman by tests/deploy/test_image.py.
  - ``docker compose``, ``podman-compose``, ``docker-compose`` ``-f FILE``: FILE is checked as
    a compose file (above).
  - ``helm install|upgrade|template RELEASE CHART --set ... --set-json ... -f ...``: the chart is rendered
    with exactly those values by the real Helm engine (tests/deploy/chart.py); ``helm
    test RELEASE``: that release's documented install renders a test hook; ``helm lint``:
    lint is clean. Only charts of this repository (``helm/*``) can be checked.
  - ``kubectl apply -f PATH``: every manifest there validates; ``kubectl port-forward
    KIND/NAME L:R``: a helm install in the same file (or deploy/kubernetes/) renders that
    object with port R; ``kubectl set image deployment/NAME C=IMAGE``: the container exists;
    ``kubectl label namespace NS K=V``: valid labels, and when the file installs a mutating
    webhook, one whose namespaceSelector the label (and only with it) matches;
    ``kubectl rollout restart KIND``: a kind that restarts.
  - ``export NAME=VALUE``: set for the block's later commands.
  - ``causality-sidecar ... | kubectl apply -f -``: the sidecar command runs for real and what
    it prints must be manifests that validate (as ``kubectl apply -f PATH`` above); piped
    into ``grep``/``head``/``tail``/``sort``/``wc`` instead, the filter runs for real
    (``grep`` must match).

  Any other command fails the test: add a checker here, or mark the block.
- A block that truly cannot be exercised gets ``<!-- example: not-runnable: REASON -->``.
  ``test_not_runnable_blocks_are_few`` lists them; the goal is zero.
- ``<!-- example: otel-sdk-env -->`` marks the OTel SDK environment block of the OTLP
  section: test_otlp_examples.py runs the real OTel Python SDK configured by exactly those
  variables.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.support.chart import CHART_DIR, KUBE_VERSIONS, SIDECAR_IMAGE, deep_merge
from tests.support.doc_blocks import (
    INERT_LANGS,
    MARKER_KINDS,
    ROOT,
    SHELL_LANGS,
    YAML_LANGS,
    Block,
    Command,
    all_blocks,
    blocks_of,
    commands_of,
    rewrite_ports,
    yaml_kind,
)
from tests.support.process import SidecarProcess, free_port, run_sidecar
from tests.support.prometheus import promtool

pytestmark = pytest.mark.xdist_group("docs-examples")

BLOCKS = all_blocks()
CLI = str(Path(sys.executable).with_name("causality-sidecar"))
COMMAND_TIMEOUT_S = 60
# At most this many blocks may be marked not runnable (the goal is zero).
MAX_NOT_RUNNABLE = 0
# An image reference: [registry[:port]/]path[:tag][@digest], lowercase path components.
_IMAGE_REF = re.compile(
    r"(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


def _ids(block: Block) -> str:
    return block.where


def _of_langs(langs: frozenset[str]) -> list[Block]:
    return [b for b in BLOCKS if b.lang in langs and b.marker != "not-runnable"]


YAML_BLOCKS = _of_langs(YAML_LANGS)
SHELL_BLOCKS = [b for b in _of_langs(SHELL_LANGS) if b.marker != "otel-sdk-env"]


# ------------------------------------------------------------------------ the demo


# ----------------------------------------------------------------------- the inventory


def test_the_harness_finds_the_examples() -> None:
    """Guards the collection: known examples of the README and docs/ are found with file and line."""
    readme = [b for b in BLOCKS if b.path == "README.md"]
    proxy = [b for b in BLOCKS if b.path == "docs/proxy.md"]
    assert any(b.lang == "yaml" and "routes:" in b.text for b in proxy)
    assert any(b.lang == "sh" and "make run" in b.text for b in readme)
    assert len(YAML_BLOCKS) >= 4
    assert len(SHELL_BLOCKS) >= 5
    lines = Path(ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    for block in readme:
        assert lines[block.line - 1].lstrip().startswith(("```", "~~~")), block.where


def test_every_block_has_a_known_language() -> None:
    """An unlabelled block escapes every check: each needs a language (``text`` if inert)."""
    known = SHELL_LANGS | YAML_LANGS | INERT_LANGS
    unknown = [f"{b.where} ({b.lang or 'no info string'})" for b in BLOCKS if b.lang not in known]
    assert unknown == []


def test_markers_are_known() -> None:
    bad = [b.where for b in BLOCKS if b.marker is not None and b.marker not in MARKER_KINDS]
    assert bad == []


def test_not_runnable_blocks_are_few() -> None:
    """Blocks marked not runnable, each with its reason; the goal is zero."""
    marked = [b for b in BLOCKS if b.marker == "not-runnable"]
    for block in marked:
        assert block.reason, f"{block.where}: not-runnable needs a reason"
    print(f"{len(marked)} not-runnable block(s): {[b.where for b in marked]}")
    assert len(marked) <= MAX_NOT_RUNNABLE, [f"{b.where}: {b.reason}" for b in marked]


def test_json_blocks_parse_and_python_blocks_compile() -> None:
    for block in BLOCKS:
        if block.lang == "json":
            json.loads(block.text)
        elif block.lang == "python":
            compile(block.text, block.where, "exec")


# --------------------------------------------------------------------------- YAML


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=_ids)
def test_yaml_example(block: Block, tmp_path: Path) -> None:
    kind = yaml_kind(block)
    assert kind is not None, f"{block.where}: unknown YAML kind; mark it (see the module doc)"
    YAML_CHECKS[kind](block.text, tmp_path)


def check_sidecar_config(text: str, tmp_path: Path) -> None:
    """``causality-sidecar check-config`` accepts it (exit 0)."""
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    done = _run([CLI, "check-config", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr


def check_kubernetes(text: str, tmp_path: Path) -> None:
    """Every document validates strictly against the oldest supported Kubernetes."""
    for doc in yaml.safe_load_all(text):
        if doc:
            kubernetes_validate.validate(doc, KUBE_VERSIONS[0], strict=True)


def check_prometheus_config(text: str, tmp_path: Path) -> None:
    """``promtool check config``, with Kubernetes SD swapped for file SD (Debian's build)."""
    config = yaml.safe_load(text)
    for job in config.get("scrape_configs", []):
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
    for rule_file in config.get("rule_files", []):
        source = ROOT / "deploy" / "prometheus" / Path(rule_file).name
        if source.is_file():
            shutil.copy(source, tmp_path / Path(rule_file).name)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def check_prometheus_rules(text: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def check_helm_values(text: str, tmp_path: Path) -> None:
    """The chart renders with these values over the required image (the real Helm engine)."""
    render_release("example", deep_merge(SIDECAR_IMAGE, yaml.safe_load(text) or {}))


def check_compose_text(text: str, tmp_path: Path) -> None:
    check_compose(yaml.safe_load(text), ROOT / "deploy")


YAML_CHECKS = {
    "sidecar-config": check_sidecar_config,
    "kubernetes": check_kubernetes,
    "prometheus-config": check_prometheus_config,
    "prometheus-rules": check_prometheus_rules,
    "helm-values": check_helm_values,
    "compose": check_compose_text,
}


def check_compose(compose: dict[str, Any], base: Path) -> None:
    """What can be checked of a compose file without a compose engine."""
    services = compose["services"]
    assert isinstance(services, dict)
    assert services
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "image" in service:
            assert _IMAGE_REF.fullmatch(service["image"]), (name, service["image"])
        if "build" in service:
            context = (base / service["build"]["context"]).resolve()
            dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), name
            if dockerfile.resolve() == ROOT / "Dockerfile":  # the sidecar: run its command
                command = service.get("command", ["run"])
                serve(shlex.split(command) if isinstance(command, str) else list(command))
        mode = service.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.removeprefix("service:") in services, (name, mode)
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
        for port in service.get("ports", []):
            assert re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+(/tcp|/udp)?", port), (name, port)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (base / source).exists(), (name, volume)
            else:
                assert source in named_volumes, (name, volume)


# --------------------------------------------------------------------------- shell


@dataclass
class Session:
    """What one shell block's commands share: the demo, exported variables, a scratch dir."""

    demo: SidecarProcess
    block: Block
    tmp_path: Path
    env: dict[str, str] = field(default_factory=dict)


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=_ids)
def test_shell_example(block: Block, demo: SidecarProcess, tmp_path: Path) -> None:
    commands = commands_of(block)
    assert commands, f"{block.where}: no command in the block"
    session = Session(demo, block, tmp_path)
    for command in commands:
        words = _words(command.source)
        assert words, f"README line {command.line}: cannot parse {command.source!r}"
        program = Path(words[0]).name
        stages = _stages(command.source)
        if program != "curl" and len(stages) > 1:
            run_pipeline(command, stages, session)
            continue
        checker = SHELL_CHECKS.get(program)
        assert checker is not None, (
            f"{block.path}:{command.line}: no checker for {program!r} (add one or mark the block)"
        )
        checker(command, words, session)


def _stages(source: str) -> list[list[str]]:
    """The words of each command of a pipeline (``a | b`` -> ``[[a], [b]]``)."""
    lexer = shlex.shlex(source, posix=True, punctuation_chars="|&;<>()")
    lexer.whitespace_split = True
    stages: list[list[str]] = [[]]
    for token in lexer:
        if token == "|":
            stages.append([])
        else:
            stages[-1].append(token)
    return stages


def run_pipeline(command: Command, stages: list[list[str]], session: Session) -> None:
    """``causality-sidecar ... | CONSUMER``: the sidecar command runs for real (leading
    ``VAR=value`` words set its environment) and its output goes through each consumer:
    ``kubectl apply -f -`` needs manifests that validate; a text filter (``grep``, ``head``,
    ``tail``, ``sort``, ``wc``) runs for real and must succeed (``grep`` must match)."""
    producer, *consumers = stages
    where = f"{session.block.path}:{command.line}"
    env = {**os.environ, **session.env}
    while producer and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", producer[0]):
        name, _, value = producer.pop(0).partition("=")
        env[name] = value
    assert Path(producer[0]).name == "causality-sidecar", f"{where}: no checker for this pipe"
    done = _run([CLI, *producer[1:]], env=env)
    assert done.returncode == 0, f"{where}: {done.stdout}{done.stderr}"
    output = done.stdout
    for consumer in consumers:
        if consumer == ["kubectl", "apply", "-f", "-"]:
            documents = [doc for doc in yaml.safe_load_all(output) if doc]
            assert documents, f"{where}: {producer[0]} printed no manifest for kubectl apply"
            for doc in documents:
                assert isinstance(doc, dict), f"{where}: not a manifest: {doc!r:.200}"
                assert "kind" in doc, f"{where}: not a manifest: {doc!r:.200}"
            check_kubernetes(output, session.tmp_path)
            output = ""
        else:
            assert consumer[0] in _TEXT_FILTERS, f"{where}: no checker for `| {consumer[0]}`"
            done = _run(consumer, input=output)
            assert done.returncode == 0, (
                f"{where}: `{shlex.join(consumer)}` failed on {output!r:.300}"
            )
            output = done.stdout
    _assert_output(command, output)


_TEXT_FILTERS = frozenset({"grep", "head", "tail", "sort", "wc"})


def _words(source: str) -> list[str]:
    """The first simple command's words, leading VAR=value assignments dropped."""
    lexer = shlex.shlex(source, posix=True, punctuation_chars="|&;<>()")
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if token in {"|", "||", "&&", ";", "&", ">", "<", ">>", "(", ")"}:
            break
        words.append(token)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words.pop(0)
    return words


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
        cwd=ROOT,
        **kwargs,
    )


def _assert_output(command: Command, output: str) -> None:
    if command.expected is None:
        return
    if command.exact:
        assert output.rstrip("\n") == command.expected, (command.line, output)
    else:
        assert command.expected in output, (command.line, output)


def run_curl(command: Command, words: list[str], session: Session) -> None:
    """The whole line through bash (pipes too), against the demo."""
    source = rewrite_ports(command.source, session.demo)
    if not command.exact:
        source = re.sub(r"(?<![\w-])curl ", "curl --fail-with-body ", source)
    env = {**os.environ, **session.env}
    done = _run(["bash", "-o", "pipefail", "-c", source], env=env)
    where = f"{session.block.path}:{command.line}"
    assert done.returncode == 0, f"{where}: {source}\n{done.stdout}{done.stderr}"
    _assert_output(command, done.stdout)


def run_sidecar_command(command: Command, words: list[str], session: Session) -> None:
    """``causality-sidecar ARGS`` (or ``python -m sidecar ARGS``) for real."""
    args = words[3:] if words[0].endswith(("python", "python3")) else words[1:]
    if args[:1] in (["run"], ["demo"]):
        serve(args)
        return
    done = _run([CLI, *args], env={**os.environ, **session.env})
    assert done.returncode == 0, f"{command.source}: {done.stdout}{done.stderr}"
    _assert_output(command, done.stdout)


def serve(args: list[str]) -> None:
    """Start ``run``/``demo`` with ``args`` on free ports; ready, then exit 0 on SIGTERM."""
    moved = list(args)
    for flag in ("--listen", "--admin-listen", "--otlp-listen", "--app-listen"):
        while flag in moved:
            index = moved.index(flag)
            del moved[index : index + 2]
    admin = f"127.0.0.1:{free_port()}"
    moved += ["--listen", f"127.0.0.1:{free_port()}", "--admin-listen", admin]
    moved += ["--otlp-listen", f"127.0.0.1:{free_port()}"]
    if moved[0] == "demo":
        moved += ["--app-listen", f"127.0.0.1:{free_port()}"]
    with run_sidecar(moved, admin=admin) as sidecar:
        code = sidecar.stop(signal.SIGTERM)
        assert code == 0, sidecar.logs()


def run_python(command: Command, words: list[str], session: Session) -> None:
    if words[1:3] == ["-m", "sidecar"]:
        run_sidecar_command(command, words, session)
        return
    script = ROOT / words[1]
    assert script.is_file(), command.source
    compile(script.read_text(encoding="utf-8"), str(script), "exec")


def run_make(command: Command, words: list[str], session: Session) -> None:
    """The targets exist (``make -n``), nothing long runs."""
    targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    assert targets, command.source
    done = _run(["make", "-n", *words[1:]])
    assert done.returncode == 0, done.stdout + done.stderr


def run_promtool(command: Command, words: list[str], session: Session) -> None:
    args = [str(ROOT / a) if (ROOT / a).exists() else a for a in words[1:]]
    done = promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def run_export(command: Command, words: list[str], session: Session) -> None:
    for word in words[1:]:
        name, _, value = word.partition("=")
        session.env[name] = value


# ------------------------------------------------------------------- containers


_RUN_FLAGS_WITH_VALUE = {
    "--name",
    "-p",
    "--publish",
    "--network",
    "--pod",
    "-v",
    "--volume",
    "-e",
    "--env",
}
_RUN_FLAGS = {"--rm", "-d", "--detach", "--read-only", "-i", "-t", "-it"}


def run_container_tool(command: Command, words: list[str], session: Session) -> None:
    """docker / podman: build, tag, push, run, compose, checked as far as possible here."""
    sub, args = words[1], words[2:]
    if sub == "compose":
        check_compose_command(args)
    elif sub == "build":
        check_build(args)
    elif sub in {"tag", "push"}:
        assert args, command.source
        assert all(_IMAGE_REF.fullmatch(a) for a in args), command.source
    elif sub == "run":
        check_container_run(args, session)
    elif sub == "pod" and args[:1] == ["create"]:
        check_pod_create(args[1:])
    else:
        pytest.fail(f"{command.source}: no checker for `{words[0]} {sub}`")


def check_build(args: list[str]) -> None:
    tags: list[str] = []
    dockerfile = "Dockerfile"
    build_args: list[str] = []
    positional: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in {"-t", "--tag"}:
            tags.append(args[index + 1])
            index += 2
        elif arg in {"-f", "--file"}:
            dockerfile = args[index + 1]
            index += 2
        elif arg == "--build-arg":
            build_args.append(args[index + 1].partition("=")[0])
            index += 2
        elif arg.startswith("-"):
            pytest.fail(f"unknown build flag {arg}")
        else:
            positional.append(arg)
            index += 1
    assert len(positional) == 1, args
    context = ROOT / positional[0]
    text = (context / dockerfile).read_text(encoding="utf-8")
    assert tags, args
    assert all(_IMAGE_REF.fullmatch(t) for t in tags), tags
    declared = set(re.findall(r"^ARG (\w+)", text, re.MULTILINE))
    assert set(build_args) <= declared, (build_args, declared)


def check_container_run(args: list[str], session: Session) -> None:
    mounts: dict[str, str] = {}
    index = 0
    while index < len(args) and args[index].startswith("-"):
        flag = args[index]
        if flag in _RUN_FLAGS:
            index += 1
            continue
        assert flag in _RUN_FLAGS_WITH_VALUE, f"unknown run flag {flag}"
        value = args[index + 1]
        if flag in {"-v", "--volume"}:
            source, target = value.split(":")[:2]
            mounts[target] = source
        if flag in {"-p", "--publish"}:
            assert re.fullmatch(r"\d+:\d+", value), value
        index += 2
    image, rest = args[index], args[index + 1 :]
    assert _IMAGE_REF.fullmatch(image), image
    if image.split(":")[0].rsplit("/", 1)[-1] != "causality-sidecar":
        # someone else's image: the flags, the reference and the mounted files are checked
        for source in mounts.values():
            if source.startswith(("./", "$PWD/")):  # files of the repository, run from its root
                assert (ROOT / source.replace("$PWD/", "./")).exists(), source
        return
    sidecar_args = rest or ["run"]  # the image's CMD
    local: list[str] = []
    for arg in sidecar_args:
        if arg in mounts:
            mounted = Path(mounts[arg].replace("$PWD", str(ROOT)))
            if not mounted.is_file():  # the reader's own file: the defaults stand in
                mounted = session.tmp_path / "mounted-config.yaml"
                mounted.write_text("{}\n", encoding="utf-8")
            local.append(str(mounted))
        else:
            local.append(arg)
    serve(local)


def check_pod_create(args: list[str]) -> None:
    """``podman pod create --name NAME -p H:C ...``: known flags, port pairs."""
    index = 0
    while index < len(args):
        flag, value = args[index], args[index + 1]
        assert flag in {"--name", "-p", "--publish"}, f"unknown pod create flag {flag}"
        if flag != "--name":
            assert re.fullmatch(r"\d+:\d+", value), value
        index += 2


def check_compose_command(args: list[str]) -> None:
    files = [args[i + 1] for i, a in enumerate(args) if a == "-f"]
    assert files, f"compose without -f FILE: {args}"
    for name in files:
        path = ROOT / name
        check_compose(yaml.safe_load(path.read_text(encoding="utf-8")), path.parent)
    verbs = [a for a in args if not a.startswith("-") and a not in files]
    assert verbs, args
    assert verbs[0] in {"up", "down", "config", "build", "ps", "logs"}, args


def run_compose_tool(command: Command, words: list[str], session: Session) -> None:
    check_compose_command(words[1:])


# ------------------------------------------------------------------- Helm, kubectl


def render_release(
    release: str, values: dict[str, Any], namespace: str = "default", chart_dir: Path = CHART_DIR
) -> list[dict[str, Any]]:
    """The chart rendered as ``helm install RELEASE`` would, every manifest document."""
    with helm.Chart.load(chart_dir) as chart:
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    return [
        doc
        for name, text in sorted(rendered.items())
        if not name.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _helm_value(text: str) -> Any:
    """A --set value typed as Helm's strvals types it."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False, "null": None}.get(text, text)


def _set(values: dict[str, Any], assignment: str, typed: bool) -> None:
    for item in assignment.split(","):
        key, _, raw = item.partition("=")
        _put(values, key, _helm_value(raw) if typed else raw)


def _put(values: dict[str, Any], key: str, value: Any) -> None:
    node = values
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def parse_helm(args: list[str]) -> tuple[list[str], dict[str, Any], str]:
    """(positional args, values, namespace) of a helm command line."""
    values: dict[str, Any] = {}
    positional: list[str] = []
    namespace = "default"
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in {"--set", "--set-string"}:
            _set(values, args[index + 1], typed=arg == "--set")
            index += 2
        elif arg == "--set-json":  # one KEY=JSON assignment
            key, _, raw = args[index + 1].partition("=")
            _put(values, key, json.loads(raw))
            index += 2
        elif arg in {"-f", "--values"}:
            values = deep_merge(values, yaml.safe_load((ROOT / args[index + 1]).read_text()))
            index += 2
        elif arg in {"-n", "--namespace"}:
            namespace = args[index + 1]
            index += 2
        elif arg in {"--create-namespace", "--wait", "--atomic", "--install"}:
            index += 1
        elif arg.startswith("-"):
            pytest.fail(f"unknown helm flag {arg}")
        else:
            positional.append(arg)
            index += 1
    return positional, values, namespace


def _chart_dir(chart: str) -> Path:
    """A chart of this repository (helm/NAME); charts from elsewhere cannot be checked."""
    path = (ROOT / chart).resolve()
    assert (path / "Chart.yaml").is_file(), f"{chart}: not a chart of this repository"
    return path


@dataclass(frozen=True)
class Install:
    """One documented ``helm install``: what to render again for ``helm test`` et al."""

    chart_dir: Path
    values: dict[str, Any]
    namespace: str

    def render(self, release: str) -> list[dict[str, Any]]:
        return render_release(release, self.values, self.namespace, self.chart_dir)


def documented_installs(path: str) -> dict[str, Install]:
    """Release -> install, for every helm install/upgrade/template in the file ``path``."""
    installs: dict[str, Install] = {}
    if not (ROOT / path).is_file():
        return installs
    for block in blocks_of(ROOT / path):
        if block.lang not in SHELL_LANGS:
            continue
        for command in commands_of(block):
            words = _words(command.source)
            if words[:2] in (["helm", "install"], ["helm", "upgrade"], ["helm", "template"]):
                (release, chart), values, namespace = parse_helm(words[2:])
                installs[release] = Install(_chart_dir(chart), values, namespace)
    return installs


def run_helm(command: Command, words: list[str], session: Session) -> None:
    sub = words[1]
    positional, values, namespace = parse_helm(words[2:])
    if sub in {"install", "upgrade", "template"}:
        release, chart = positional
        docs = Install(_chart_dir(chart), values, namespace).render(release)
        assert docs, command.source
    elif sub == "test":
        install = documented_installs(session.block.path).get(positional[0])
        assert install is not None, f"{command.source}: no helm install of that release"
        docs = install.render(positional[0])
        hooks = [d["metadata"].get("annotations", {}).get("helm.sh/hook") for d in docs]
        assert "test" in hooks, command.source
    elif sub == "lint":
        chart_dir = _chart_dir(positional[0])
        if chart_dir == CHART_DIR:  # lint ignores `required`; the image is set as for install
            values = deep_merge(SIDECAR_IMAGE, values)
        report = helm.lint(chart_dir, values, strict=True)
        assert report["errors"] == []
    else:
        pytest.fail(f"{command.source}: no checker for `helm {sub}`")


@cache
def _installed_objects(path: str) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """(kind, name, ports) of what the helm installs in ``path`` and deploy/kubernetes make."""
    docs: list[dict[str, Any]] = []
    for release, install in documented_installs(path).items():
        docs += install.render(release)
    for manifest in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    objects = []
    for doc in docs:
        ports: list[int] = []
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                ports += [p["containerPort"] for p in container.get("ports", [])]
        if doc["kind"] == "Service":
            ports += [p["port"] for p in doc["spec"]["ports"]]
        objects.append((doc["kind"].lower(), doc["metadata"]["name"], tuple(ports)))
    return tuple(objects)


def run_kubectl(command: Command, words: list[str], session: Session) -> None:
    args = list(words[1:])
    for flag in ("--namespace", "-n"):
        while flag in args:
            index = args.index(flag)
            del args[index : index + 2]
    sub = args[0]
    if sub == "apply":
        target = ROOT / args[args.index("-f") + 1]
        files = sorted(target.glob("*.yaml")) if target.is_dir() else [target]
        assert files, target
        for path in files:
            check_kubernetes(path.read_text(encoding="utf-8"), session.tmp_path)
    elif sub == "port-forward":
        kind, _, name = args[1].partition("/")
        remote = int(args[2].rpartition(":")[2])
        objects = _installed_objects(session.block.path)
        assert any(k == kind and n == name and remote in p for k, n, p in objects), (
            f"{command.source}: no {kind}/{name} with port {remote} in {objects}"
        )
    elif sub == "set" and args[1] == "image":
        kind, _, name = args[2].partition("/")
        container, _, image = args[3].partition("=")
        assert _IMAGE_REF.fullmatch(image), image
        for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc["kind"].lower() == kind and doc["metadata"]["name"] == name:
                    pod = doc["spec"]["template"]["spec"]
                    names = [c["name"] for c in pod.get("initContainers", []) + pod["containers"]]
                    assert container in names, (container, names)
                    return
        pytest.fail(f"{command.source}: no {kind}/{name} in deploy/kubernetes/")
    elif sub == "label" and args[1] == "namespace":
        check_namespace_label(args[2], args[3:], session.block.path)
    elif sub == "rollout" and args[1] == "restart":
        kind = args[2].partition("/")[0]
        assert kind in {"deployment", "daemonset", "statefulset"}, command.source
    else:
        pytest.fail(f"{command.source}: no checker for `kubectl {sub}`")


_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels, matchExpressions) against ``labels``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def check_namespace_label(namespace: str, assignments: list[str], path: str) -> None:
    """The labels are valid; a webhook the same file installs selects the labelled namespace."""
    labels = {"kubernetes.io/metadata.name": namespace}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        assert _LABEL_KEY.fullmatch(key), key
        assert len(value) <= 63, value
        assert _LABEL_VALUE.fullmatch(value), value
        labels[key] = value
    selectors = [
        webhook.get("namespaceSelector", {})
        for release, install in documented_installs(path).items()
        for doc in install.render(release)
        if doc["kind"] == "MutatingWebhookConfiguration"
        for webhook in doc["webhooks"]
    ]
    if selectors:  # the label is what turns a documented webhook on for that namespace
        matched = [s for s in selectors if selector_matches(s, labels)]
        unlabelled = {"kubernetes.io/metadata.name": namespace}
        assert any(not selector_matches(s, unlabelled) for s in matched), (labels, selectors)


SHELL_CHECKS = {
    "curl": run_curl,
    "causality-sidecar": run_sidecar_command,
    "python": run_python,
    "python3": run_python,
    "make": run_make,
    "promtool": run_promtool,
    "export": run_export,
    "docker": run_container_tool,
    "podman": run_container_tool,
    "podman-compose": run_compose_tool,
    "docker-compose": run_compose_tool,
    "helm": run_helm,
    "kubectl": run_kubectl,
}


# ------------------------------------------------- the checks catch what they should


def _block(lang: str, text: str, marker: str | None = None) -> Block:
    return Block("GUARD.md", 1, lang, text, marker)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("proxy:\n  upstream: http://127.0.0.1:8080\n", "sidecar-config"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "kubernetes"),
        ("scrape_configs: []\n", "prometheus-config"),
        ("groups: []\n", "prometheus-rules"),
        ("services: {}\n", "compose"),
        ("app:\n  port: 8080\n", None),
    ],
)
def test_yaml_kind_from_top_level_keys(text: str, kind: str | None) -> None:
    assert yaml_kind(_block("yaml", text)) == kind
    assert yaml_kind(_block("yaml", text, marker="helm-values")) == "helm-values"


def test_commands_are_split_as_documented() -> None:
    block = _block(
        "sh",
        '# a comment line\ncurl -s -d \'{\n  "a": 1\n}\' http://x   # "shown"\nmake \\\n  run\n',
    )
    assert [(c.source, c.expected) for c in commands_of(block)] == [
        ("curl -s -d '{\n  \"a\": 1\n}' http://x", "shown"),
        ("make run", None),
    ]
    console = _block("console", "$ echo a\na\n\n$ echo b\n")
    assert [(c.source, c.expected, c.exact) for c in commands_of(console)] == [
        ("echo a", "a", True),
        ("echo b", None, True),
    ]


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("yaml", "proxy:\n  routes: [/users/{id}, /files/{path*}]\n"),  # the README's old bug
        ("yaml", "proxy:\n  bogus: 1\n"),
        ("yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbogus: 1\n"),
        ("yaml", "scrape_configs:\n  - job_name: a\n    scrape_interval: soon\n"),
        ("sh", "curl -s localhost:9464/no-such-path\n"),
        ("sh", 'curl -s localhost:9464/healthz   # "not what it answers"\n'),
        ("console", "$ curl -s localhost:9464/healthz\nnot what it answers\n"),
        ("sh", "causality-sidecar check-config /no/such/file.yaml\n"),
        ("sh", "make no-such-target\n"),
        ("sh", "helm install shop helm/causality-sidecar --set app.port=8080\n"),
        (
            "sh",
            "kubectl --namespace default port-forward deployment/shop-causality-sidecar 9464:9464\n",
        ),
        ("sh", "docker build -t causality-sidecar:dev --build-arg NO_SUCH_ARG=1 .\n"),
        ("sh", "docker run --rm --privileged causality-sidecar:dev\n"),
        ("sh", "wget http://127.0.0.1:9464/metrics\n"),
        ("sh", "kubectl label namespace shop sidecar.causality.dev/injection=on!\n"),
        ("sh", "causality-sidecar version | kubectl apply -f -\n"),
        ("sh", "causality-sidecar check-config /dev/null | grep no_such_key:\n"),
        (
            "sh",
            "causality-sidecar inject --image x:1 docs/examples/shop.yaml | kubectl delete -f -\n",
        ),
    ],
    ids=[
        "flow-list-routes",
        "unknown-config-key",
        "bad-manifest",
        "bad-prometheus-duration",
        "curl-404",
        "curl-other-output",
        "console-other-output",
        "check-config-missing-file",
        "make-no-target",
        "helm-without-sidecar-image",
        "port-forward-unknown-deployment",
        "unknown-build-arg",
        "unknown-run-flag",
        "unknown-command",
        "bad-label-value",
        "pipe-no-manifest",
        "pipe-grep-no-match",
        "pipe-unknown-consumer",
    ],
)
def test_a_broken_example_fails(lang: str, text: str, demo: SidecarProcess, tmp_path: Path) -> None:
    block = _block(lang, text)
    expected = (
        AssertionError,
        pytest.fail.Exception,
        yaml.YAMLError,
        kubernetes_validate.ValidationError,
        helm.HelmError,
    )
    if lang == "yaml":
        with pytest.raises(expected):
            test_yaml_example(block, tmp_path)
    else:
        with pytest.raises(expected):
            test_shell_example(block, demo, tmp_path)
