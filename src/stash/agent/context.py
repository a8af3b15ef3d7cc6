"""What every agent command knows: its pod, its client, its invoker, how to run restic.

What it is for: `AgentContext`, built once per process from flags and the downward-API
environment and passed to the backup, restore and step code; `load_backup_invoker()`,
which reads the BackupConfiguration (fresh for every session, so spec changes apply
without a restart); the metric labels of §7.3 for an invoker.

Not for: decisions (pure rules are in `identity` and `stats`) or restic itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationError

from stash.agent.identity import PodIdentity
from stash.agent.repository import AgentError, ResticSettings
from stash.agent.stats import TargetKey
from stash.api import BackupBatch, BackupConfiguration
from stash.api.common import BackupHooks, BackupTarget, RetentionPolicy
from stash.contract.batches import backup_members, member_index
from stash.contract.resources import BACKUPBATCHES, BACKUPCONFIGURATIONS
from stash.hooks import PodExec
from stash.kube.client import JSON, Forbidden, Kube, NotFound
from stash.kube.events import EventRecorder

if TYPE_CHECKING:  # imported when used: prometheus_client costs the agent's start-up
    from stash.sessionmetrics import MetricLabels

__all__ = ["AgentContext", "BackupInvoker", "load_backup_invoker"]


@dataclass
class AgentContext:
    """One agent process: its pod, API client, restic settings and metrics target."""

    kube: Kube
    pod: PodIdentity
    settings: ResticSettings
    invoker_kind: str
    invoker_name: str
    target: TargetKey
    pushgateway_url: str | None = None
    metrics_enabled: bool = True
    pod_exec: PodExec | None = None
    """How exec hooks run (`pods/exec`); None: exec hooks fail saying so."""
    recorder: EventRecorder = field(init=False)

    def __post_init__(self) -> None:
        self.recorder = EventRecorder(self.kube, "stash-agent", self.pod.pod_name)

    @property
    def namespace(self) -> str:
        """The namespace of the invoker and its sessions (the pod's own)."""
        return self.pod.namespace

    def metric_labels(self, repository: str) -> MetricLabels:
        """§7.3 labels for this invoker, its target and `repository`."""
        from stash.sessionmetrics import MetricLabels, target_group

        return MetricLabels(
            invoker_kind=self.invoker_kind,
            invoker_name=self.invoker_name,
            namespace=self.namespace,
            repository=repository,
            target_kind=self.target.kind,
            target_group=target_group(self.target.kind),
            target_name=self.target.name,
        )

    @property
    def push_url(self) -> str | None:
        """Where to push metrics (None when metrics are disabled)."""
        return self.pushgateway_url if self.metrics_enabled else None


@dataclass(frozen=True)
class BackupInvoker:
    """A BackupConfiguration as the agent needs it."""

    raw: JSON
    name: str
    namespace: str
    target: BackupTarget
    retention: RetentionPolicy
    repository_name: str
    repository_namespace: str
    hooks: BackupHooks | None = None


def _readable(where: str, exc: Forbidden) -> AgentError:
    return AgentError(
        f"reading {where} is forbidden for this pod's ServiceAccount ({exc.message}); "
        "bind it to the ClusterRole stash-sidecar"
    )


async def _read(
    kube: Kube, kind: str, name: str, namespace: str
) -> BackupConfiguration | BackupBatch:
    """The stored invoker, parsed."""
    where = f"{kind} {namespace}/{name}"
    res = BACKUPBATCHES if kind == "BackupBatch" else BACKUPCONFIGURATIONS
    try:
        raw = await kube.get(res, name, namespace)
    except NotFound:
        raise AgentError(f"{where} does not exist") from None
    except Forbidden as exc:
        raise _readable(where, exc) from None
    try:
        if kind == "BackupBatch":
            return BackupBatch.model_validate(raw)
        return BackupConfiguration.model_validate(raw)
    except ValidationError as exc:
        raise AgentError(f"{where} does not parse: {exc.errors()[0]['msg']}") from None


async def load_backup_invoker(
    kube: Kube, kind: str, name: str, namespace: str, target: TargetKey | None = None
) -> BackupInvoker:
    """Read the invoker; AgentError when it is missing, unreadable or unsupported.

    For a BackupBatch the member whose target is `target` is the invoker (its target,
    alias and the batch's repository and retention)."""
    if kind not in ("BackupConfiguration", "BackupBatch"):
        raise AgentError(f"invoker kind {kind} is not supported by the agent")
    where = f"{kind} {namespace}/{name}"
    obj = await _read(kube, kind, name, namespace)
    model: BackupConfiguration
    if isinstance(obj, BackupBatch):
        members = backup_members(obj)
        index = (
            member_index(members, target.kind, target.name, target.namespace)
            if target is not None
            else None
        )
        if index is None:
            what = f"{target.kind} {target.namespace}/{target.name}" if target else "?"
            raise AgentError(f"{where} has no member with target {what}")
        model = members[index]
    else:
        model = obj
    spec = model.spec
    if spec is None or spec.target is None:
        raise AgentError(f"{where} has no spec.target")
    if spec.repository is None or not spec.repository.name:
        raise AgentError(f"{where} has no spec.repository.name")
    return BackupInvoker(
        raw=model.to_wire(),
        name=name,
        namespace=namespace,
        target=spec.target,
        retention=spec.retention_policy,
        repository_name=spec.repository.name,
        repository_namespace=spec.repository.namespace or namespace,
        hooks=spec.hooks,
    )
