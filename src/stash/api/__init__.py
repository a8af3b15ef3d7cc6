"""Pydantic models of every Stash kind: the single source of truth for the API and its CRDs.

What it is for: importing the kinds (`from stash.api import BackupConfiguration`) and
the `KINDS` registry, which says for each kind how it is served (group, version,
plural, scope, short names, categories, printer columns). The CRD generator and the
clients read the registry instead of repeating those facts.

Not for: behaviour. Controllers, the webhook and the agent put their rules in pure
functions of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from stash.api.appbinding import APPCATALOG_GROUP, AppBinding
from stash.api.backupconfiguration import BackupConfiguration
from stash.api.backupsession import BackupSession
from stash.api.base import StashModel
from stash.api.batch import BackupBatch, RestoreBatch
from stash.api.blueprint import BackupBlueprint
from stash.api.repository import Repository
from stash.api.restoresession import RestoreSession
from stash.api.task import Function, Task

__all__ = [
    "CRD_KINDS",
    "GROUP",
    "KINDS",
    "AppBinding",
    "BackupBatch",
    "BackupBlueprint",
    "BackupConfiguration",
    "BackupSession",
    "Function",
    "KindInfo",
    "PrinterColumn",
    "Repository",
    "RestoreBatch",
    "RestoreSession",
    "Task",
]

GROUP = "stash.appscode.com"


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column of a CRD."""

    name: str
    type: str
    json_path: str


@dataclass(frozen=True)
class KindInfo:
    """How one kind is served by the apiserver."""

    kind: str
    model: type[StashModel]
    version: str
    plural: str
    singular: str
    scope: str  # "Namespaced" or "Cluster"
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]
    has_status: bool
    group: str = GROUP

    @property
    def api_version(self) -> str:
        """`<group>/<version>`, as written in an object's apiVersion."""
        return f"{self.group}/{self.version}"


def _col(name: str, json_path: str, type_: str = "string") -> PrinterColumn:
    return PrinterColumn(name=name, type=type_, json_path=json_path)


_AGE = _col("Age", ".metadata.creationTimestamp", "date")
_PHASE = _col("Phase", ".status.phase")
_DURATION = _col("Duration", ".status.sessionDuration")
_SCHEDULE = _col("Schedule", ".spec.schedule")
_PAUSED = _col("Paused", ".spec.paused", "boolean")
_NEXT = _col("Next-Backup", ".status.nextBackupTime")
_TASK = _col("Task", ".spec.task.name")
_REPOSITORY = _col("Repository", ".spec.repository.name")
_BASE = ("stash", "appscode")
_WITH_ALL = (*_BASE, "all")

KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            kind="Repository",
            model=Repository,
            version="v1alpha1",
            plural="repositories",
            singular="repository",
            scope="Namespaced",
            short_names=("repo",),
            categories=_BASE,
            columns=(
                _col("Integrity", ".status.integrity", "boolean"),
                _col("Size", ".status.totalSize"),
                _col("Snapshot-Count", ".status.snapshotCount", "integer"),
                _col("Last-Successful-Backup", ".status.lastBackupTime", "date"),
                _AGE,
            ),
            has_status=True,
        ),
        KindInfo(
            kind="BackupConfiguration",
            model=BackupConfiguration,
            version="v1beta1",
            plural="backupconfigurations",
            singular="backupconfiguration",
            scope="Namespaced",
            short_names=("bc",),
            categories=_WITH_ALL,
            columns=(_TASK, _SCHEDULE, _PAUSED, _NEXT, _PHASE, _AGE),
            has_status=True,
        ),
        KindInfo(
            kind="BackupSession",
            model=BackupSession,
            version="v1beta1",
            plural="backupsessions",
            singular="backupsession",
            scope="Namespaced",
            short_names=(),
            categories=_WITH_ALL,
            columns=(
                _col("Invoker-Type", ".spec.invoker.kind"),
                _col("Invoker-Name", ".spec.invoker.name"),
                _PHASE,
                _DURATION,
                _AGE,
            ),
            has_status=True,
        ),
        KindInfo(
            kind="RestoreSession",
            model=RestoreSession,
            version="v1beta1",
            plural="restoresessions",
            singular="restoresession",
            scope="Namespaced",
            short_names=("restore",),
            categories=_WITH_ALL,
            columns=(_REPOSITORY, _PHASE, _DURATION, _AGE),
            has_status=True,
        ),
        KindInfo(
            kind="BackupBatch",
            model=BackupBatch,
            version="v1beta1",
            plural="backupbatches",
            singular="backupbatch",
            scope="Namespaced",
            short_names=(),
            categories=_WITH_ALL,
            columns=(_SCHEDULE, _PAUSED, _NEXT, _PHASE, _AGE),
            has_status=True,
        ),
        KindInfo(
            kind="RestoreBatch",
            model=RestoreBatch,
            version="v1beta1",
            plural="restorebatches",
            singular="restorebatch",
            scope="Namespaced",
            short_names=(),
            categories=_WITH_ALL,
            columns=(_REPOSITORY, _PHASE, _DURATION, _AGE),
            has_status=True,
        ),
        KindInfo(
            kind="BackupBlueprint",
            model=BackupBlueprint,
            version="v1beta1",
            plural="backupblueprints",
            singular="backupblueprint",
            scope="Cluster",
            short_names=("bb",),
            categories=_BASE,
            columns=(_TASK, _SCHEDULE, _AGE),
            has_status=False,
        ),
        KindInfo(
            kind="Function",
            model=Function,
            version="v1beta1",
            plural="functions",
            singular="function",
            scope="Cluster",
            short_names=("fn",),
            categories=_BASE,
            columns=(_AGE,),
            has_status=False,
        ),
        KindInfo(
            kind="Task",
            model=Task,
            version="v1beta1",
            plural="tasks",
            singular="task",
            scope="Cluster",
            short_names=("task",),
            categories=_BASE,
            columns=(_AGE,),
            has_status=False,
        ),
    )
}
"""Every Stash kind, by kind name, in a stable order."""

CRD_KINDS: dict[str, KindInfo] = {
    **KINDS,
    "AppBinding": KindInfo(
        kind="AppBinding",
        model=AppBinding,
        version="v1alpha1",
        plural="appbindings",
        singular="appbinding",
        scope="Namespaced",
        short_names=("app",),
        categories=("catalog", "appscode", "all"),
        columns=(_col("Type", ".spec.type"), _col("Version", ".spec.version"), _AGE),
        has_status=False,
        group=APPCATALOG_GROUP,
    ),
}
"""Every CRD we install: our kinds and the AppBinding (KubeDB's kind, for database targets,
installed by us when nothing else serves it). Only `KINDS` are validated by our webhook."""
