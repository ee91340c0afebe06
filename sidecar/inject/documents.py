"""``causality-sidecar inject``: every pod template of a stream of Kubernetes documents.

Reads YAML (one or many documents) or JSON (one object), writes the same documents in the
same order and format, the sidecar added to every pod template by `inject_pod`, everything
else kept. A Service of the same input whose numeric ``targetPort`` is the port an injected
pod's sidecar took over is pointed at the sidecar's proxy port (a pod cannot redirect a
numeric targetPort by itself). What is not injected passes through unchanged; one line per
document on stderr says what happened and why.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sidecar.config import ConfigError
from sidecar.inject.baseconfig import read_base_config
from sidecar.inject.mutate import Injection, inject_pod
from sidecar.inject.settings import InjectSettings

__all__ = [
    "InjectInputError",
    "InjectResult",
    "add_arguments",
    "inject_documents",
    "inject_text",
    "run",
]

# kind -> the path from the object to its pod template ("" = the object is the pod)
TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


_DEFAULTS = InjectSettings(image="")
# The sidecar's listeners: flag, default, help.
PORT_FLAGS: tuple[tuple[str, int, str], ...] = (
    ("--proxy-port", _DEFAULTS.proxy_port, "the sidecar's proxy port"),
    ("--admin-port", _DEFAULTS.admin_port, "the sidecar's admin port (/metrics, probes)"),
    ("--ingest-port", _DEFAULTS.ingest_port, "the sidecar's OTLP/HTTP port on 127.0.0.1"),
)


class InjectInputError(ValueError):
    """The input is not Kubernetes YAML or JSON (the CLI exits 2 with this message)."""


@dataclass(slots=True)
class InjectResult:
    """The documents out, and one note per document for stderr."""

    documents: list[Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Injected:
    namespace: str | None
    labels: Mapping[str, Any]
    injection: Injection


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (odd input is passed through)."""
    return value if isinstance(value, Mapping) else {}


def _name(doc: Mapping[str, Any]) -> str:
    metadata = _mapping(doc.get("metadata"))
    name = metadata.get("name") or metadata.get("generateName") or "<unnamed>"
    return f"{doc.get('kind')}/{name}"


def _check(doc: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise InjectInputError(
            f"{where}: expected a Kubernetes object (a mapping), got {doc!r:.60}"
        )
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise InjectInputError(f"{where}: not a Kubernetes object: no {key}")
    if doc.get("metadata") is not None and not isinstance(doc["metadata"], dict):
        raise InjectInputError(f"{where}: metadata is not a mapping")
    return doc


def _walk(docs: list[Any], where: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every object, the items of a ``kind: List`` too, with where it sits (for messages)."""
    for index, doc in enumerate(docs):
        at = f"{where}[{index}]"
        obj = _check(doc, at)
        if obj["kind"] == "List" or (obj["kind"].endswith("List") and "items" in obj):
            items = obj.get("items") or []
            if not isinstance(items, list):
                raise InjectInputError(f"{at}.items: expected a list")
            yield from _walk(items, f"{at}.items")
        else:
            yield doc, at


def _template(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    node: Any = doc
    for key in TEMPLATE_PATHS[doc["kind"]]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _set_template(doc: dict[str, Any], template: dict[str, Any]) -> None:
    path = TEMPLATE_PATHS[doc["kind"]]
    if not path:
        doc.clear()
        doc.update(template)
        return
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = template


def inject_documents(docs: list[Any], settings: InjectSettings) -> InjectResult:
    """Inject every pod template of ``docs`` (parsed objects); returns new objects.

    Raises:
        InjectInputError: a document is not a Kubernetes object.
    """
    out = copy.deepcopy(docs)
    result = InjectResult(out)
    injected: list[_Injected] = []
    services: list[dict[str, Any]] = []
    for doc, _ in _walk(out, "document"):
        kind = doc["kind"]
        if kind == "Service":
            services.append(doc)
            continue
        if kind not in TEMPLATE_PATHS:
            result.notes.append(f"{_name(doc)}: unchanged: not a workload kind")
            continue
        template = _template(doc)
        if template is None:
            result.notes.append(f"{_name(doc)}: unchanged: no pod template")
            continue
        namespace = _mapping(doc.get("metadata")).get("namespace")
        injection = inject_pod(template, settings, namespace=namespace)
        for warning in injection.warnings:
            result.notes.append(f"{_name(doc)}: warning: {warning}")
        if not injection.injected:
            result.notes.append(f"{_name(doc)}: unchanged: {injection.reason}")
            continue
        _set_template(doc, injection.pod)
        labels = _mapping(_mapping(injection.pod.get("metadata")).get("labels"))
        injected.append(_Injected(namespace, labels, injection))
        result.notes.append(f"{_name(doc)}: injected")
    for service in services:
        result.notes.append(_retarget(service, injected))
    return result


def _selects(service: Mapping[str, Any], pod: _Injected) -> bool:
    namespace = _mapping(service.get("metadata")).get("namespace")
    selector = _mapping(_mapping(service.get("spec")).get("selector"))
    if not selector:
        return False
    # no namespace on one of them: both go where `kubectl apply --namespace` puts them
    if namespace is not None and pod.namespace is not None and namespace != pod.namespace:
        return False
    return all(pod.labels.get(key) == value for key, value in selector.items())


def _retarget(service: dict[str, Any], injected: list[_Injected]) -> str:
    """Point a numeric targetPort that reached an injected app at its sidecar's proxy port."""
    changes: list[str] = []
    for pod in injected:
        if not _selects(service, pod):
            continue
        upstream, proxy = pod.injection.upstream_port, pod.injection.proxy_port
        ports = _mapping(service.get("spec")).get("ports")
        for port in ports if isinstance(ports, list) else []:
            if not isinstance(port, dict) or port.get("protocol", "TCP") != "TCP":
                continue
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and target.isdigit():
                target = int(target)
            if target == upstream and proxy is not None:
                port["targetPort"] = proxy
                changes.append(f"targetPort {upstream} -> {proxy}")
    if not changes:
        return f"{_name(service)}: unchanged: no numeric targetPort of an injected pod"
    return f"{_name(service)}: {', '.join(changes)} (the sidecar's proxy port)"


class _Dumper(yaml.SafeDumper):
    """YAML out with multi-line strings (the sidecar's inline config) as ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _is_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def inject_text(text: str, settings: InjectSettings) -> tuple[str, list[str]]:
    """`inject_documents` over YAML or JSON text: (the output text, the stderr notes).

    Raises:
        InjectInputError: not YAML/JSON, or not Kubernetes objects.
    """
    dump: Callable[[list[Any]], str]
    if _is_json(text):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InjectInputError(f"not valid JSON: {exc}") from None
        single = not isinstance(parsed, list)
        docs = [parsed] if single else parsed

        def dump(out: list[Any]) -> str:
            return json.dumps(out[0] if single else out, indent=2) + "\n"

    else:
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise InjectInputError(f"not valid YAML: {' '.join(str(exc).split())}") from None

        def dump(out: list[Any]) -> str:
            return yaml.dump_all(out, Dumper=_Dumper, sort_keys=False, explicit_start=True)

    if not docs:
        raise InjectInputError("no Kubernetes object in the input")
    result = inject_documents(docs, settings)
    return dump(result.documents), result.notes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inject`` subcommand's arguments (sidecar.cli)."""
    parser.add_argument(
        "file", metavar="FILE", nargs="?", default="-", help="YAML or JSON (default -: stdin)"
    )
    parser.add_argument("--image", required=True, help="the sidecar image, REGISTRY/NAME:TAG")
    parser.add_argument(
        "--native",
        action="store_true",
        help="a native sidecar (init container, restartPolicy Always); for Kubernetes >= 1.32",
    )
    parser.add_argument(
        "--config-map", metavar="NAME", help="a ConfigMap holding config.yaml for the sidecar"
    )
    parser.add_argument(
        "--upstream-port", metavar="N", type=int, help="the app port to proxy (default: per pod)"
    )
    parser.add_argument(
        "--sidecar-config",
        metavar="FILE",
        help="a sidecar config every pod gets under its own part (SIDECAR_CONFIG_YAML)",
    )
    parser.add_argument(
        "--admin-tls-secret",
        metavar="NAME",
        help="the Secret with the admin certificate, when that config turns admin.tls on",
    )
    for flag, default, what in PORT_FLAGS:
        parser.add_argument(
            flag, metavar="N", type=int, default=default, help=f"{what} (default {default})"
        )


def run(args: argparse.Namespace) -> int:
    """``inject``: documents in (FILE or stdin), documents out (stdout), notes on stderr."""
    for flag in ("--upstream-port", *(f for f, _, _ in PORT_FLAGS)):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and not 1 <= value <= 65535:
            print(f"causality-sidecar inject: {flag}: not a port: {value}", file=sys.stderr)
            return 2
    try:
        base = read_base_config(args.sidecar_config) if args.sidecar_config else {}
    except ConfigError as exc:
        print(f"causality-sidecar inject: {exc}", file=sys.stderr)
        return 2
    settings = InjectSettings(
        image=args.image,
        native=args.native,
        config_map=args.config_map,
        upstream_port=args.upstream_port,
        proxy_port=args.proxy_port,
        admin_port=args.admin_port,
        ingest_port=args.ingest_port,
        base_config=base,
        admin_tls_secret=args.admin_tls_secret,
    )
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"causality-sidecar inject: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        output, notes = inject_text(text, settings)
    except InjectInputError as exc:
        print(f"causality-sidecar inject: {args.file}: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"causality-sidecar inject: {note}", file=sys.stderr)
    sys.stdout.write(output)
    return 0
