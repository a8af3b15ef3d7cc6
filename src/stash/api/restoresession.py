"""The RestoreSession kind (`stash.appscode.com/v1beta1`, stash-api.md §1.5).

What it is for: a one-shot restore of a target (or of new PVCs from templates) from a
Repository, and its per-host outcome.

Not for: rule matching or phase computation (pure functions elsewhere).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stash.api.base import Int32, StashModel, Time, crd_default
from stash.api.common import (
    Condition,
    Driver,
    EmptyDirSettings,
    HookExecution,
    ObjectReference,
    RestoreHooks,
    RestoreTarget,
    Rule,
    RuntimeSettings,
    TaskRef,
)
from stash.api.k8s import ObjectMeta, PersistentVolumeClaimTemplate

__all__ = [
    "HostRestorePhase",
    "HostRestoreStats",
    "RestorePhase",
    "RestoreSession",
    "RestoreSessionSpec",
    "RestoreSessionStatus",
    "RestoreTargetSpec",
]

RestorePhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown", "Invalid"]
"""Phase of a RestoreSession or RestoreBatch."""

HostRestorePhase = Literal["Succeeded", "Failed", "Running", "Unknown"]
"""Outcome of one host's restore."""


class RestoreTargetSpec(StashModel):
    """The per-target part of a restore: shared by RestoreSession and batch members."""

    task: TaskRef | None = None
    target: RestoreTarget | None = None
    runtime_settings: RuntimeSettings | None = None
    temp_dir: EmptyDirSettings | None = None
    interim_volume_template: PersistentVolumeClaimTemplate | None = None
    hooks: RestoreHooks | None = None


class RestoreSessionSpec(RestoreTargetSpec):
    """The desired state of a RestoreSession.

    `rules` is deprecated: the mutating webhook moves it into `target.rules`.
    """

    driver: Driver | None = Field(default=None, json_schema_extra=crd_default("Restic"))
    repository: ObjectReference | None = None
    rules: list[Rule] | None = None
    time_out: str | None = None


class HostRestoreStats(StashModel):
    """How one host's restore went."""

    hostname: str | None = None
    phase: HostRestorePhase | None = None
    duration: str | None = None
    error: str | None = None
    hooks: list[HookExecution] | None = None


class RestoreSessionStatus(StashModel):
    """Progress and outcome of a RestoreSession."""

    phase: RestorePhase | None = None
    total_hosts: Int32 | None = None
    session_duration: str | None = None
    session_deadline: Time | None = None
    conditions: list[Condition] | None = None
    stats: list[HostRestoreStats] | None = None


class RestoreSession(StashModel):
    """Restore a target from a Repository, once."""

    api_version: str = "stash.appscode.com/v1beta1"
    kind: str = "RestoreSession"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RestoreSessionSpec | None = None
    status: RestoreSessionStatus | None = None
