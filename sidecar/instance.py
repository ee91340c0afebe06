"""The sidecar's ``service.instance.id``: the same at every restart, different per instance.

A UUID v5 in the namespace `NAMESPACE` of the first source that applies: the explicit
``service.instance.id``, the pod's Kubernetes resource attributes, or the host (machine-id,
hostname and a caller's discriminator); the names themselves stay out of the id. Why the
SDK's random id is not enough, and the rules in full: docs/deployment.md.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NAMESPACE", "Host", "stable_instance_id"]

NAMESPACE = uuid.UUID("4d63009a-8d0f-11ee-aad7-4c796ed8e320")  # semantic conventions
POD_ATTRIBUTES = ("k8s.namespace.name", "k8s.pod.name", "k8s.container.name")
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


@dataclass(frozen=True, slots=True)
class Host:
    """What identifies the machine (or container) when there is no pod."""

    machine_id: str
    hostname: str

    @classmethod
    def detect(cls) -> Host:
        """This machine's id (empty when no file holds one) and hostname."""
        return cls(_machine_id(), socket.gethostname())


def _machine_id() -> str:
    for path in MACHINE_ID_FILES:
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return ""


def stable_instance_id(
    attributes: Mapping[str, object], *, discriminator: str = "", host: Host | None = None
) -> str:
    """The UUID v5 of this instance's inherent identity (see the module's docstring).

    Args:
        attributes: the resource's attributes (``k8s.pod.name`` and its companions).
        discriminator: tells apart instances on one host without a pod (e.g. a listen address).
        host: the host identity; detected when None.
    """
    if attributes.get("k8s.pod.name"):
        source = ".".join(str(attributes.get(key, "")) for key in POD_ATTRIBUTES)
    else:
        found = host if host is not None else Host.detect()
        source = f"{found.machine_id}.{found.hostname}.{discriminator}"
    return str(uuid.uuid5(NAMESPACE, source))
