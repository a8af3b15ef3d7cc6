"""The BackupBlueprint kind (cluster-scoped `stash.appscode.com/v1beta1`, stash-api.md §3).

What it is for: a template from which auto-backup makes a Repository and a
BackupConfiguration for each annotated workload, PVC or database. String fields may
hold `${TARGET_*}` variables, substituted per target.

Not for: the substitution or the objects it produces (`resolve_blueprint` elsewhere).
"""

from __future__ import annotations

from pydantic import Field

from stash.api.base import Bool, Int32, StashModel
from stash.api.common import (
    BackupHooks,
    EmptyDirSettings,
    RetentionPolicy,
    RetryConfig,
    RuntimeSettings,
    TaskRef,
)
from stash.api.k8s import ObjectMeta, PersistentVolumeClaimTemplate
from stash.api.repository import Backend, UsagePolicy

__all__ = ["BackupBlueprint", "BackupBlueprintSpec"]


class BackupBlueprintSpec(StashModel):
    """A Repository spec (inline) plus the BackupConfiguration fields to stamp out."""

    backend: Backend | None = None
    wipe_out: Bool | None = None
    usage_policy: UsagePolicy | None = None
    backup_namespace: str | None = None
    repo_namespace: str | None = None
    schedule: str | None = None
    task: TaskRef | None = None
    retention_policy: RetentionPolicy | None = None
    runtime_settings: RuntimeSettings | None = None
    temp_dir: EmptyDirSettings | None = None
    interim_volume_template: PersistentVolumeClaimTemplate | None = None
    hooks: BackupHooks | None = None
    backup_history_limit: Int32 | None = None
    time_out: str | None = None
    retry_config: RetryConfig | None = None


class BackupBlueprint(StashModel):
    """A cluster-wide recipe for auto-backup."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "BackupBlueprint"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: BackupBlueprintSpec | None = None
