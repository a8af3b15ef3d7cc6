"""Pure phase rules of stash-api.md §1.3-1.5: invoker, target, session and restore phases.

Each function reads a status (models from `stash.api`) and returns the phase the status
implies; reconcilers call them on every status write, so the phase is never stored
out of step with the conditions it is derived from.
"""

from __future__ import annotations

from typing import Literal

from stash.api.backupsession import (
    BackupSessionPhase,
    BackupSessionStatus,
    BackupTargetStatus,
    TargetPhase,
)
from stash.api.batch import RestoreBatchStatus, RestoreMemberStatus
from stash.api.common import Condition
from stash.api.restoresession import RestorePhase, RestoreSessionStatus
from stash.kube.conditions import get_condition, is_false, is_true, is_unknown

# BackupConfiguration / BackupBatch condition types (§1.3). `ScheduleRegistered` replaces
# upstream's `CronJobCreated`: our cron engine runs in the operator (docs/compatibility.md).
REPOSITORY_FOUND = "RepositoryFound"
BACKEND_SECRET_FOUND = "BackendSecretFound"
VALIDATION_PASSED = "ValidationPassed"
BACKUP_TARGET_FOUND = "BackupTargetFound"
SCHEDULE_REGISTERED = "ScheduleRegistered"
REPOSITORY_USAGE_ALLOWED = "RepositoryUsageAllowed"
"""Ours: the Repository's usage policy allows the invoker's namespace (docs/compatibility.md)."""
STASH_SIDECAR_INJECTED = "StashSidecarInjected"
#: VolumeSnapshotter invokers: the snapshot CRDs and the VolumeSnapshotClass exist (ours).
VOLUME_SNAPSHOT_CLASS_FOUND = "VolumeSnapshotClassFound"

# BackupSession conditions (§1.4).
BACKEND_REPOSITORY_INITIALIZED = "BackendRepositoryInitialized"
RETENTION_POLICY_APPLIED = "RetentionPolicyApplied"
REPOSITORY_INTEGRITY_VERIFIED = "RepositoryIntegrityVerified"
REPOSITORY_METRICS_PUSHED = "RepositoryMetricsPushed"
BACKUP_SKIPPED = "BackupSkipped"
BACKUP_HISTORY_CLEANED = "BackupHistoryCleaned"
METRICS_PUSHED = "MetricsPushed"
DEADLINE_EXCEEDED = "DeadlineExceeded"
GLOBAL_PRE_BACKUP_HOOK = "GlobalPreBackupHookSucceeded"
GLOBAL_POST_BACKUP_HOOK = "GlobalPostBackupHookSucceeded"
BACKUP_EXECUTOR_ENSURED = "BackupExecutorEnsured"
PRE_BACKUP_HOOK = "PreBackupHookExecutionSucceeded"
POST_BACKUP_HOOK = "PostBackupHookExecutionSucceeded"
BACKUP_DISRUPTED = "BackupDisrupted"

FINAL_SESSION_PHASES = frozenset({"Succeeded", "Failed", "Skipped"})
FINAL_HOST_PHASES = frozenset({"Succeeded", "Failed"})
FINAL_RESTORE_PHASES = frozenset({"Succeeded", "Failed", "Unknown"})


def backup_invoker_phase(conditions: list[Condition] | None, driver: str | None) -> str:
    """Ready / NotReady / Invalid for a BackupConfiguration or BackupBatch (§1.3)."""
    if is_false(conditions, VALIDATION_PASSED):
        return "Invalid"
    restic = (driver or "Restic") == "Restic"
    if restic and (
        not is_true(conditions, REPOSITORY_FOUND)
        or not is_true(conditions, BACKEND_SECRET_FOUND)
        or is_false(conditions, REPOSITORY_USAGE_ALLOWED)
    ):
        return "NotReady"
    if is_false(conditions, BACKUP_TARGET_FOUND):
        return "NotReady"
    if is_false(conditions, VOLUME_SNAPSHOT_CLASS_FOUND) or is_unknown(
        conditions, VOLUME_SNAPSHOT_CLASS_FOUND
    ):
        return "NotReady"  # nothing could take the snapshots: the condition says what to install
    if is_false(conditions, STASH_SIDECAR_INJECTED) or is_unknown(
        conditions, STASH_SIDECAR_INJECTED
    ):
        return "NotReady"  # a sidecar-model invoker that cannot back up is never Ready
    if is_true(conditions, VALIDATION_PASSED) and is_true(conditions, SCHEDULE_REGISTERED):
        return "Ready"
    return "NotReady"


def is_valid(conditions: list[Condition] | None) -> bool:
    """True unless ValidationPassed is False."""
    return not is_false(conditions, VALIDATION_PASSED)


def target_phase(target: BackupTargetStatus) -> TargetPhase:
    """The phase of one target of a BackupSession (§1.4)."""
    conds = target.conditions
    if (
        is_false(conds, BACKUP_EXECUTOR_ENSURED)
        or is_false(conds, PRE_BACKUP_HOOK)
        or is_false(conds, POST_BACKUP_HOOK)
        or is_true(conds, BACKUP_DISRUPTED)
    ):
        return "Failed"
    if target.total_hosts is None:
        return "Pending"
    stats = target.stats or []
    final = [s for s in stats if s.phase in FINAL_HOST_PHASES]
    if len(final) >= target.total_hosts:
        return "Failed" if any(s.phase == "Failed" for s in final) else "Succeeded"
    return "Running"


def ended(conditions: list[Condition] | None) -> bool:
    """Whether the operator recorded the session's end: `MetricsPushed` is set, True
    or False. A metrics push that failed (False) never fails a session: the phase
    follows the backup or restore alone (docs/compatibility.md)."""
    return get_condition(conditions, METRICS_PUSHED) is not None


def backup_session_phase(status: BackupSessionStatus) -> BackupSessionPhase:
    """The phase of a BackupSession from its conditions and targets (§1.4, in order)."""
    conds = status.conditions
    if is_true(conds, BACKUP_SKIPPED):
        return "Skipped"
    if ended(conds) and (
        is_true(conds, DEADLINE_EXCEEDED)
        or is_false(conds, BACKUP_HISTORY_CLEANED)
        or is_false(conds, GLOBAL_PRE_BACKUP_HOOK)
        or is_false(conds, GLOBAL_POST_BACKUP_HOOK)
    ):
        return "Failed"
    targets = status.targets or []
    phases = [target_phase(t) for t in targets]
    if not targets or all(p == "Pending" for p in phases):
        return "Pending"
    if all(p in ("Succeeded", "Failed") for p in phases) and ended(conds):
        if (
            "Failed" in phases
            or is_false(conds, RETENTION_POLICY_APPLIED)
            or is_false(conds, REPOSITORY_INTEGRITY_VERIFIED)
        ):
            return "Failed"
        return "Succeeded"
    return "Running"


def session_completed(status: BackupSessionStatus) -> bool:
    """True when no more work will happen: all targets final, deadline passed, or the
    global pre-backup hook failed (§5.4 step 2). Metrics may still need pushing."""
    conds = status.conditions
    if is_true(conds, DEADLINE_EXCEEDED) or is_false(conds, GLOBAL_PRE_BACKUP_HOOK):
        return True
    targets = status.targets or []
    return bool(targets) and all(target_phase(t) in ("Succeeded", "Failed") for t in targets)


# RestoreSession condition types (§1.5).
RESTORE_TARGET_FOUND = "RestoreTargetFound"
RESTORE_EXECUTOR_ENSURED = "RestoreExecutorEnsured"
RESTORE_COMPLETED = "RestoreCompleted"


def restore_session_phase(status: RestoreSessionStatus) -> str:
    """The phase of a RestoreSession (§1.5)."""
    conds = status.conditions
    if ended(conds) and is_true(conds, DEADLINE_EXCEEDED):
        return "Failed"
    if is_false(conds, VALIDATION_PASSED):
        return "Invalid"
    if (
        not conds
        or status.total_hosts is None
        or is_false(conds, REPOSITORY_FOUND)
        or is_false(conds, BACKEND_SECRET_FOUND)
        or is_false(conds, REPOSITORY_USAGE_ALLOWED)
        or is_false(conds, RESTORE_TARGET_FOUND)
    ):
        return "Pending"
    stats = status.stats or []
    final = [s for s in stats if s.phase in ("Succeeded", "Failed", "Unknown")]
    if len(final) >= status.total_hosts:
        if not ended(conds):
            return "Running"
        if any(s.phase == "Unknown" for s in final):
            return "Unknown"
        if any(s.phase == "Failed" for s in final):
            return "Failed"
        return "Succeeded"
    return "Running"


def restore_completed(status: RestoreSessionStatus) -> bool:
    """True when every host reported a final result, or the deadline passed."""
    if is_true(status.conditions, DEADLINE_EXCEEDED):
        return True
    if status.total_hosts is None:
        return False
    final = [s for s in status.stats or [] if s.phase in ("Succeeded", "Failed", "Unknown")]
    return len(final) >= status.total_hosts


RestoreMemberPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


def restore_member_phase(member: RestoreMemberStatus) -> RestoreMemberPhase:
    """The phase of one RestoreBatch member (§1.6): Failed when its executor could not
    be ensured; Pending until initiated (totalHosts); then as a RestoreSession's hosts."""
    if is_false(member.conditions, RESTORE_EXECUTOR_ENSURED):
        return "Failed"
    if member.total_hosts is None:
        return "Pending"
    final = [s for s in member.stats or [] if s.phase in FINAL_RESTORE_PHASES]
    if len(final) < member.total_hosts:
        return "Running"
    if any(s.phase == "Unknown" for s in final):
        return "Unknown"
    return "Failed" if any(s.phase == "Failed" for s in final) else "Succeeded"


def restore_batch_completed(status: RestoreBatchStatus) -> bool:
    """Every member final (Succeeded/Failed/Unknown), or the deadline passed."""
    if is_true(status.conditions, DEADLINE_EXCEEDED):
        return True
    members = status.members or []
    return bool(members) and all(restore_member_phase(m) in FINAL_RESTORE_PHASES for m in members)


def restore_batch_phase(status: RestoreBatchStatus) -> RestorePhase:
    """The phase of a RestoreBatch (§1.6, the RestoreSession rules over its members)."""
    conds = status.conditions
    if is_false(conds, METRICS_PUSHED):
        return "Failed"
    if is_true(conds, METRICS_PUSHED) and is_true(conds, DEADLINE_EXCEEDED):
        return "Failed"
    if is_false(conds, VALIDATION_PASSED):
        return "Invalid"
    if is_false(conds, REPOSITORY_FOUND) or is_false(conds, BACKEND_SECRET_FOUND):
        return "Pending"
    phases = [restore_member_phase(m) for m in status.members or []]
    if not phases or all(p == "Pending" for p in phases):
        return "Pending"
    if all(p in FINAL_RESTORE_PHASES for p in phases) and is_true(conds, METRICS_PUSHED):
        if "Unknown" in phases:
            return "Unknown"
        return "Failed" if "Failed" in phases else "Succeeded"
    return "Running"
