"""The BackupBatch and RestoreBatch kinds (`stash.appscode.com/v1beta1`, stash-api.md §1.6).

What it is for: backing up (or restoring) several targets together through one
repository, in parallel or in sequence, with global hooks run by the operator.

Not for: member ordering or phase rules (pure functions elsewhere).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stash.api.backupconfiguration import BackupConfigurationTemplateSpec, BackupInvokerPhase
from stash.api.base import Bool, Int32, Int64, StashModel, Time, crd_default
from stash.api.common import (
    BackupHooks,
    Condition,
    Driver,
    ExecutionOrder,
    ObjectReference,
    RestoreHooks,
    RetentionPolicy,
    RetryConfig,
    RuntimeSettings,
    TargetRef,
)
from stash.api.k8s import ObjectMeta
from stash.api.restoresession import HostRestoreStats, RestorePhase, RestoreTargetSpec

__all__ = [
    "BackupBatch",
    "BackupBatchSpec",
    "BackupBatchStatus",
    "MemberConditions",
    "RestoreBatch",
    "RestoreBatchSpec",
    "RestoreBatchStatus",
    "RestoreMemberStatus",
]


class BackupBatchSpec(StashModel):
    """The desired state of a BackupBatch: members share schedule, repository, retention."""

    members: list[BackupConfigurationTemplateSpec] | None = None
    schedule: str | None = None
    runtime_settings: RuntimeSettings | None = None
    driver: Driver | None = Field(default=None, json_schema_extra=crd_default("Restic"))
    repository: ObjectReference | None = None
    retention_policy: RetentionPolicy
    paused: Bool | None = None
    backup_history_limit: Int32 | None = None
    hooks: BackupHooks | None = None
    execution_order: ExecutionOrder | None = Field(
        default=None, json_schema_extra=crd_default("Parallel")
    )
    time_out: str | None = None
    retry_config: RetryConfig | None = None


class MemberConditions(StashModel):
    """The conditions the operator recorded for one member's target."""

    target: TargetRef
    conditions: list[Condition] | None = None


class BackupBatchStatus(StashModel):
    """What the operator observed about a BackupBatch."""

    observed_generation: Int64 | None = None
    phase: BackupInvokerPhase | None = None
    conditions: list[Condition] | None = None
    member_conditions: list[MemberConditions] | None = None
    next_backup_time: Time | None = None
    """When the cron engine creates the next scheduled BackupSession (unset: paused)."""


class BackupBatch(StashModel):
    """Back up several targets together on one schedule."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "BackupBatch"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: BackupBatchSpec | None = None
    status: BackupBatchStatus | None = None


class RestoreBatchSpec(StashModel):
    """The desired state of a RestoreBatch."""

    driver: Driver | None = Field(default=None, json_schema_extra=crd_default("Restic"))
    repository: ObjectReference | None = None
    members: list[RestoreTargetSpec] | None = None
    execution_order: ExecutionOrder | None = Field(
        default=None, json_schema_extra=crd_default("Parallel")
    )
    hooks: RestoreHooks | None = None
    time_out: str | None = None


class RestoreMemberStatus(StashModel):
    """Progress of one member of a RestoreBatch."""

    ref: TargetRef
    conditions: list[Condition] | None = None
    total_hosts: Int32 | None = None
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    stats: list[HostRestoreStats] | None = None


class RestoreBatchStatus(StashModel):
    """Progress and outcome of a RestoreBatch."""

    phase: RestorePhase | None = None
    session_duration: str | None = None
    conditions: list[Condition] | None = None
    members: list[RestoreMemberStatus] | None = None
    session_deadline: Time | None = None


class RestoreBatch(StashModel):
    """Restore several targets together, once."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "RestoreBatch"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RestoreBatchSpec | None = None
    status: RestoreBatchStatus | None = None
