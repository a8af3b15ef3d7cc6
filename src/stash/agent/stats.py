"""Pure rules about one host's part in a session: whether to act, what to report.

What it is for: the decisions an agent makes from a live BackupSession or
RestoreSession without any I/O — whether its host has work in a session
(`backup_assignment`), whether it is the last host, which restic summary becomes which
`SnapshotStats`, and the new status after upserting a host's stats entry or a session
condition (keyed by hostname, so other hosts' entries are never touched). Agents pass
these functions to `stash.kube.status.update_status`, which calls them on the live
object at every conflict retry.

Not for: session or target phases as a whole (`stash.contract.phases`, whose
`target_phase` is reused here so a target's phase is never stale after our write).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stash.api.backupsession import (
    BackupSessionStatus,
    FileStats,
    HostBackupStats,
    SnapshotStats,
)
from stash.api.restoresession import HostRestoreStats, RestoreSessionStatus
from stash.contract import phases as P
from stash.kube.client import JSON
from stash.kube.conditions import get_condition, is_false, set_condition
from stash.restic import BackupSummary, format_bytes

__all__ = [
    "INITIALIZATION_PENDING",
    "INITIALIZE_REPOSITORY",
    "POST_BACKUP_ACTIONS",
    "Assignment",
    "TargetKey",
    "backup_assignment",
    "failed_paths_message",
    "is_last_host",
    "other_targets_done",
    "processing_time",
    "restore_host_entry",
    "snapshot_stats",
    "with_backup_condition",
    "with_host_stats",
    "with_restore_host_stats",
]

INITIALIZE_REPOSITORY = "InitializeBackendRepository"
APPLY_RETENTION = "ApplyRetentionPolicy"
VERIFY_INTEGRITY = "VerifyRepositoryIntegrity"
SEND_METRICS = "SendRepositoryMetrics"
POST_BACKUP_ACTIONS = (APPLY_RETENTION, VERIFY_INTEGRITY, SEND_METRICS)


@dataclass(frozen=True)
class TargetKey:
    """Which target an agent serves: kind, name and namespace of `target.ref`."""

    kind: str
    name: str
    namespace: str

    def matches(self, ref: JSON | None, session_namespace: str) -> bool:
        """Whether a status entry's `ref` names this target (empty ns = session's)."""
        if not ref:
            return False
        ns = ref.get("namespace") or session_namespace
        return (
            ref.get("kind") == self.kind and ref.get("name") == self.name and ns == self.namespace
        )


@dataclass(frozen=True)
class Assignment:
    """The work of one host in a session: its target entry and the actions it carries."""

    target_index: int
    total_hosts: int
    pre_actions: tuple[str, ...]
    post_actions: tuple[str, ...]


def backup_assignment(session: JSON, target: TargetKey, hostname: str) -> Assignment | str:
    """What `hostname` has to do in `session`, or why it has nothing to do (a reason).

    Nothing to do when the session is final or skipped, a global pre-backup hook
    failed, the operator has not initiated the target yet (no entry with
    `totalHosts`), or the host already reported (§4.5).
    """
    raw = session.get("status") or {}
    phase = raw.get("phase")
    if phase in P.FINAL_SESSION_PHASES:
        return f"the session is {phase}"
    status = BackupSessionStatus.model_validate(raw)
    if is_false(status.conditions, P.GLOBAL_PRE_BACKUP_HOOK):
        return "the global pre-backup hook failed"
    if get_condition(status.conditions, P.BACKUP_SKIPPED) is not None:
        return "the session is being skipped"
    ns = session["metadata"]["namespace"]
    for index, entry in enumerate(raw.get("targets") or []):
        if not target.matches(entry.get("ref"), ns):
            continue
        if entry.get("totalHosts") is None:
            return "the operator has not initiated this target yet"
        for host in entry.get("stats") or []:
            if host.get("hostname") == hostname:
                return f"host {hostname} already reported {host.get('phase') or 'a result'}"
        if _initialization_pending(status, entry):
            return INITIALIZATION_PENDING
        return Assignment(
            target_index=index,
            total_hosts=int(entry["totalHosts"]),
            pre_actions=tuple(entry.get("preBackupActions") or ()),
            post_actions=tuple(entry.get("postBackupActions") or ()),
        )
    return "the session has no entry for this target yet"


INITIALIZATION_PENDING = "another target of the session initializes the repository first"


def _initialization_pending(status: BackupSessionStatus, entry: JSON) -> bool:
    """A target without InitializeBackendRepository waits while the target that has it
    (a batch's first member) has neither initialized the repository nor finished (§4.5)."""
    if INITIALIZE_REPOSITORY in (entry.get("preBackupActions") or ()):
        return False
    if get_condition(status.conditions, P.BACKEND_REPOSITORY_INITIALIZED) is not None:
        return False
    for t in status.targets or []:
        if INITIALIZE_REPOSITORY in (t.pre_backup_actions or ()):
            return P.target_phase(t) not in ("Succeeded", "Failed")
    return False


def is_last_host(session: JSON, index: int, hostname: str) -> bool:
    """Whether every other host of target `index` has a final stats entry (§5.7)."""
    entry = ((session.get("status") or {}).get("targets") or [])[index]
    total = int(entry.get("totalHosts") or 0)
    others = {
        h.get("hostname")
        for h in entry.get("stats") or []
        if h.get("hostname") != hostname and h.get("phase") in P.FINAL_HOST_PHASES
    }
    return len(others) >= total - 1


def other_targets_done(session: JSON, index: int) -> bool:
    """Whether every target but `index` has all its hosts reported (or failed)."""
    status = BackupSessionStatus.model_validate(session.get("status") or {})
    return all(
        P.target_phase(t) in ("Succeeded", "Failed")
        for i, t in enumerate(status.targets or [])
        if i != index
    )


def processing_time(seconds: float) -> str:
    """restic's processing time as Stash reports it: `<minutes>m<seconds>s`."""
    whole = max(round(seconds), 0)
    return f"{whole // 60}m{whole % 60}s"


def snapshot_stats(path: str, summary: BackupSummary) -> SnapshotStats:
    """One snapshot's entry (§1.4) from restic's backup summary."""
    snapshot_id = summary.snapshot_id or ""
    return SnapshotStats(
        name=snapshot_id[:8],
        path=path,
        total_size=format_bytes(summary.total_bytes_processed),
        uploaded=format_bytes(summary.data_added),
        processing_time=processing_time(summary.total_duration),
        file_stats=FileStats(
            total_files=summary.total_files_processed,
            new_files=summary.files_new,
            modified_files=summary.files_changed,
            unmodified_files=summary.files_unmodified,
        ),
    )


def with_host_stats(live: JSON, index: int, host: HostBackupStats) -> JSON | None:
    """The live session's status with `host` upserted into target `index` (by
    hostname); None (no write) when the session is already final."""
    raw = live.get("status") or {}
    if raw.get("phase") in P.FINAL_SESSION_PHASES:
        return None
    status = BackupSessionStatus.model_validate(raw)
    targets = status.targets or []
    if index >= len(targets):
        return None
    target = targets[index]
    stats = [h for h in target.stats or [] if h.hostname != host.hostname]
    target.stats = [*stats, host]
    target.phase = P.target_phase(target)
    return status.to_wire()


def with_backup_condition(
    live: JSON, type_: str, ok: bool, reason: str, message: str
) -> JSON | None:
    """The live session's status with session condition `type_` set (None if final)."""
    raw = live.get("status") or {}
    if raw.get("phase") in P.FINAL_SESSION_PHASES:
        return None
    status = BackupSessionStatus.model_validate(raw)
    status.conditions = set_condition(status.conditions, type_, ok, reason, message[:1024])
    return status.to_wire()


def restore_host_entry(live: JSON, hostname: str) -> HostRestoreStats | None:
    """The host's stats entry in a RestoreSession, if it reported."""
    status = RestoreSessionStatus.model_validate(live.get("status") or {})
    for entry in status.stats or []:
        if entry.hostname == hostname:
            return entry
    return None


def with_restore_host_stats(live: JSON, host: HostRestoreStats) -> JSON | None:
    """The live RestoreSession status with `host` upserted (None when final)."""
    raw = live.get("status") or {}
    if raw.get("phase") in P.FINAL_RESTORE_PHASES:
        return None
    status = RestoreSessionStatus.model_validate(raw)
    status.stats = [*(s for s in status.stats or [] if s.hostname != host.hostname), host]
    return status.to_wire()


def failed_paths_message(missing: Sequence[str]) -> str:
    """The host error for backup paths that are not in the pod."""
    if len(missing) == 1:
        return (
            f"path {missing[0]} does not exist in the pod; fix spec.target.paths or mount "
            "the volume that holds it (spec.target.volumeMounts)"
        )
    listed = ", ".join(missing)
    return (
        f"paths {listed} do not exist in the pod; fix spec.target.paths or mount the "
        "volumes that hold them (spec.target.volumeMounts)"
    )
