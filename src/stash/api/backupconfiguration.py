"""The BackupConfiguration kind (`stash.appscode.com/v1beta1`, stash-api.md §1.3).

What it is for: what to back up (target or task), where to (repository), when
(schedule), what to keep (retention), and how it runs (runtime settings, hooks,
retries); plus the invoker status the operator writes (phase, conditions).

Not for: computing the phase from the conditions or building the CronJob.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stash.api.base import Bool, Int32, Int64, StashModel, Time, crd_default
from stash.api.common import (
    BackupHooks,
    BackupTarget,
    Condition,
    Driver,
    EmptyDirSettings,
    ObjectReference,
    RetentionPolicy,
    RetryConfig,
    RuntimeSettings,
    TaskRef,
)
from stash.api.k8s import ObjectMeta, PersistentVolumeClaimTemplate

__all__ = [
    "BackupConfiguration",
    "BackupConfigurationSpec",
    "BackupConfigurationStatus",
    "BackupConfigurationTemplateSpec",
    "BackupInvokerPhase",
]

BackupInvokerPhase = Literal["Invalid", "Ready", "NotReady"]
"""Phase of a backup invoker (BackupConfiguration, BackupBatch)."""


class BackupConfigurationTemplateSpec(StashModel):
    """The per-target part of a backup: shared by BackupConfiguration and batch members."""

    task: TaskRef | None = None
    target: BackupTarget | None = None
    runtime_settings: RuntimeSettings | None = None
    temp_dir: EmptyDirSettings | None = None
    interim_volume_template: PersistentVolumeClaimTemplate | None = None
    hooks: BackupHooks | None = None


class BackupConfigurationSpec(BackupConfigurationTemplateSpec):
    """The desired state of a BackupConfiguration."""

    schedule: str | None = None
    driver: Driver | None = Field(default=None, json_schema_extra=crd_default("Restic"))
    repository: ObjectReference | None = None
    retention_policy: RetentionPolicy
    paused: Bool | None = None
    backup_history_limit: Int32 | None = None
    time_out: str | None = None
    retry_config: RetryConfig | None = None


class BackupConfigurationStatus(StashModel):
    """What the operator observed about a BackupConfiguration."""

    observed_generation: Int64 | None = None
    phase: BackupInvokerPhase | None = None
    conditions: list[Condition] | None = None
    next_backup_time: Time | None = None
    """When the cron engine creates the next scheduled BackupSession (unset: paused)."""


class BackupConfiguration(StashModel):
    """Back up one target on a schedule into a Repository."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "BackupConfiguration"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: BackupConfigurationSpec | None = None
    status: BackupConfigurationStatus | None = None
