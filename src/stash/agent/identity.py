"""Who an agent is: its pod, its restic host name, and the names of its Leases.

What it is for: the pure naming rules of stash-api.md §4.4-4.5 and §12 — the restic
`--host` a pod backs up and restores as (`host-0`, `host-<ordinal>`, the node name, or
the target's alias), the Lease a workload's pods elect a leader or take turns on
(`lock-<kind>-<name>-backup|restore`), and the heartbeat Lease of one host's backup
(`stash-hb-<session>-<host>`, a DNS subdomain name) — plus `PodIdentity`, the pod facts
the downward API gives the agent (POD_NAME, POD_NAMESPACE, NODE_NAME).

Not for: talking to the apiserver (the heartbeat and the sidecar use these names).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "SERIALIZED_KINDS",
    "PodIdentity",
    "backup_hostname",
    "heartbeat_lease_name",
    "workload_lease_name",
]

SERIALIZED_KINDS = frozenset({"StatefulSet", "DaemonSet"})
"""Kinds whose every pod backs up its own host, taking turns on the workload's Lease."""

_ORDINAL = re.compile(r"-(\d+)$")
_NOT_DNS = re.compile(r"[^a-z0-9.-]+")
_MAX_DNS = 253


@dataclass(frozen=True)
class PodIdentity:
    """The pod the agent runs in, as the downward API describes it."""

    pod_name: str
    namespace: str
    node_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PodIdentity:
        """Read POD_NAME, POD_NAMESPACE and NODE_NAME (injected by `stash.inject`).

        Outside a pod the host name stands in for the pod name, and the namespace comes
        from the ServiceAccount mount when POD_NAMESPACE is unset.
        """
        env = os.environ if env is None else env
        namespace = env.get("POD_NAMESPACE", "")
        if not namespace:
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                    namespace = f.read().strip()
            except OSError:
                namespace = ""
        return cls(
            pod_name=env.get("POD_NAME") or socket.gethostname(),
            namespace=namespace,
            node_name=env.get("NODE_NAME", ""),
        )


def backup_hostname(kind: str, alias: str | None, pod_name: str, node_name: str) -> str:
    """The restic `--host` of a pod of a `kind` workload (stash-api.md §4.4).

    Deployment-like kinds (and the job model) back up one host, `host-0` or the alias;
    a StatefulSet pod is `host-<ordinal>` (`<alias>-<ordinal>`) from its name's suffix;
    a DaemonSet pod is its node's name (`<alias>-<node>`). Raises ValueError when the
    pod name or node name the rule needs is missing.
    """
    if kind == "StatefulSet":
        match = _ORDINAL.search(pod_name)
        if match is None:
            raise ValueError(
                f"pod name {pod_name!r} has no ordinal suffix; a StatefulSet pod is "
                "named <statefulset>-<ordinal> (is POD_NAME set from metadata.name?)"
            )
        return f"{alias or 'host'}-{match[1]}"
    if kind == "DaemonSet":
        if not node_name:
            raise ValueError("NODE_NAME is empty; a DaemonSet pod backs up as its node's name")
        return f"{alias}-{node_name}" if alias else node_name
    return alias or "host-0"


def workload_lease_name(kind: str, name: str, purpose: str) -> str:
    """`lock-<kind>-<name>-<purpose>` lowercased (§4.5, §12); purpose backup|restore."""
    return _dns(f"lock-{kind}-{name}-{purpose}")


def heartbeat_lease_name(session: str, hostname: str) -> str:
    """`stash-hb-<session>-<hostname>` as a valid Lease name (DNS subdomain, ≤253).

    Host names may hold characters a Lease name cannot (upper case, `_`); those are
    replaced, and a too-long name is shortened with a hash so two hosts never share one.
    """
    raw = f"stash-hb-{session}-{hostname}"
    name = _dns(raw)
    if name != raw.lower() or len(name) > _MAX_DNS:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
        name = f"{name[: _MAX_DNS - 11].rstrip('.-')}-{digest}"
    return name


def _dns(text: str) -> str:
    """Lowercase `text` into a DNS subdomain: [a-z0-9.-], alphanumeric at both ends."""
    out = _NOT_DNS.sub("-", text.lower())
    out = re.sub(r"-{2,}", "-", out).strip(".-")
    return out[:_MAX_DNS].rstrip(".-") or "stash"
