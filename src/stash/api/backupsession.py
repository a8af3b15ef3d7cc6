"""The BackupSession kind (`stash.appscode.com/v1beta1`, stash-api.md §1.4).

What it is for: one run of a backup invoker — which invoker, how many retries are
left — and its progress: per-target and per-host status, snapshot statistics,
conditions, deadline and retry bookkeeping.

Not for: computing target or session phases (pure functions elsewhere).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stash.api.base import Bool, Int32, Int64, StashModel, Time
from stash.api.common import Condition, HookExecution, TargetRef
from stash.api.k8s import ObjectMeta

__all__ = [
    "BackupInvokerRef",
    "BackupSession",
    "BackupSessionPhase",
    "BackupSessionSpec",
    "BackupSessionStatus",
    "BackupTargetStatus",
    "FileStats",
    "HostBackupPhase",
    "HostBackupStats",
    "SnapshotStats",
    "TargetPhase",
]

BackupSessionPhase = Literal["Pending", "Skipped", "Running", "Succeeded", "Failed", "Unknown"]
"""Phase of a BackupSession."""

TargetPhase = Literal["Pending", "Succeeded", "Running", "Failed"]
"""Phase of one target within a BackupSession."""

HostBackupPhase = Literal["Succeeded", "Failed"]
"""Outcome of one host's backup."""


class BackupInvokerRef(StashModel):
    """The BackupConfiguration or BackupBatch that started a session."""

    api_group: str | None = None
    kind: str
    name: str


class BackupSessionSpec(StashModel):
    """What a BackupSession runs; immutable once created."""

    invoker: BackupInvokerRef | None = None
    retry_left: Int32 | None = None


class FileStats(StashModel):
    """File counts restic reported for one snapshot."""

    total_files: Int64 | None = None
    new_files: Int64 | None = None
    modified_files: Int64 | None = None
    unmodified_files: Int64 | None = None


class SnapshotStats(StashModel):
    """One snapshot taken for a host: its name, path and restic's numbers."""

    name: str | None = None
    path: str | None = None
    total_size: str | None = None
    uploaded: str | None = None
    processing_time: str | None = None
    file_stats: FileStats | None = None


class HostBackupStats(StashModel):
    """How one host's backup went in this session."""

    hostname: str | None = None
    phase: HostBackupPhase | None = None
    snapshots: list[SnapshotStats] | None = None
    duration: str | None = None
    error: str | None = None
    hooks: list[HookExecution] | None = None


class BackupTargetStatus(StashModel):
    """Progress of one target: hosts, actions assigned to it, per-host stats."""

    ref: TargetRef | None = None
    total_hosts: Int32 | None = None
    phase: TargetPhase | None = None
    stats: list[HostBackupStats] | None = None
    pre_backup_actions: list[str] | None = None
    post_backup_actions: list[str] | None = None
    conditions: list[Condition] | None = None


class BackupSessionStatus(StashModel):
    """Progress and outcome of a BackupSession."""

    phase: BackupSessionPhase | None = None
    session_duration: str | None = None
    targets: list[BackupTargetStatus] | None = None
    conditions: list[Condition] | None = None
    session_deadline: Time | None = None
    retried: Bool | None = None
    next_retry: Time | None = None


class BackupSession(StashModel):
    """One run of a BackupConfiguration or BackupBatch."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "BackupSession"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: BackupSessionSpec | None = None
    status: BackupSessionStatus | None = None
