"""Back up one host's paths with restic and say honestly how it went.

What it is for: `backup_host()` — check that every path exists in the pod, clear
provably stale locks, then `restic backup <path> --host <hostname>` once per path (one
snapshot per path, the target's excludes and extra args, tagged with the session:
`session_tag`), and return the host's `HostBackupStats`: Succeeded only when every path
was backed up completely. A path that is missing fails the host before anything is
uploaded; an incomplete snapshot (restic exit 3, unreadable files) is never listed as a
success; a restic that failed after it wrote its snapshot (killed before it printed the
ID) has the session's snapshot named in the error; a repository-wide error (wrong
password, unreachable or full storage, lock held) ends the host at once with restic's
message and hint. `initialize_repository()` is the pre-backup action.

Not for: session status, heartbeats or post-backup actions (`executor`,
`postbackup`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stash.agent.lockpolicy import clear_stale_locks
from stash.agent.repository import RepositoryHandle
from stash.agent.stats import failed_paths_message, snapshot_stats
from stash.api.backupsession import HostBackupStats, SnapshotStats
from stash.contract.sessions import format_duration
from stash.kube.client import Kube
from stash.restic import (
    BackendAuthFailed,
    BackendUnreachable,
    BackupIncomplete,
    BackupSummary,
    InitResult,
    InvalidBackend,
    NoSpace,
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
    ResticTooOld,
    WrongPassword,
)

__all__ = [
    "BackupRequest",
    "backup_host",
    "failed_host",
    "initialize_repository",
    "recorded_backups",
    "request_from_target",
    "session_tag",
]

log = logging.getLogger(__name__)

#: The restic tag every snapshot gets: `stash.appscode.com/backup-session=<session>`.
SESSION_TAG_PREFIX = "stash.appscode.com/backup-session="

#: Errors about the repository as a whole: the next path would fail the same way.
_FATAL = (
    WrongPassword,
    RepositoryNotFound,
    BackendUnreachable,
    BackendAuthFailed,
    NoSpace,
    RepositoryLocked,
    InvalidBackend,
    ResticTooOld,
)


@dataclass(frozen=True)
class BackupRequest:
    """What to back up for one host."""

    hostname: str
    paths: tuple[str, ...]
    excludes: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    """restic tags of every snapshot (the session's, `session_tag`)."""


def session_tag(session: str) -> str:
    """The restic tag naming the BackupSession a snapshot was taken for."""
    return f"{SESSION_TAG_PREFIX}{session}"


def failed_host(hostname: str, error: str, started: float | None = None) -> HostBackupStats:
    """A Failed stats entry for `hostname` with `error`."""
    elapsed = time.monotonic() - started if started is not None else 0.0
    return HostBackupStats(
        hostname=hostname, phase="Failed", duration=format_duration(elapsed), error=error
    )


async def initialize_repository(repo: RepositoryHandle) -> InitResult:
    """`InitializeBackendRepository`: create the restic repository unless it exists."""
    result = await repo.restic.init()
    log.info("%s restic repository %s", "created" if result.created else "found", repo.display)
    return result


def recorded_backups(repo: RepositoryHandle) -> str | None:
    """What the Repository's status says was backed up into it ("the Repository's status
    records ..."), or None when it records no backup (the repository may not exist yet)."""
    status = repo.model.status
    if status is None or not (status.snapshot_count or status.last_backup_time):
        return None
    count = status.snapshot_count or 0
    when = status.last_backup_time
    last = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "unknown"
    return (
        f"Repository {repo.namespace}/{repo.name}'s status records {count} snapshot(s) in "
        f"{repo.display} (last backup {last})"
    )


def _vanished(repo: RepositoryHandle, exc: RepositoryNotFound) -> RepositoryNotFound:
    """`exc` worded for a repository that existed: it was deleted or moved, and stash does
    not create an empty one in its place."""
    recorded = recorded_backups(repo)
    if recorded is not None:
        exc.message = f"{exc.message}, although {recorded}"
        exc.args = (exc.message,)
        exc.hint = (
            "the restic repository was deleted or moved outside stash; stash does not "
            "create an empty one in its place. Bring it back (or fix spec.backend), or "
            "delete and re-create the Repository object to start a new repository"
        )
    return exc


async def _backup_path(
    kube: Kube, repo: RepositoryHandle, request: BackupRequest, path: str
) -> BackupSummary:
    for attempt in (1, 2):
        try:
            return await repo.restic.backup(
                [path],
                host=request.hostname,
                tags=request.tags,
                excludes=request.excludes,
                extra_args=request.args,
            )
        except RepositoryNotFound as exc:
            raise _vanished(repo, exc) from None
        except RepositoryLocked:
            if attempt == 2:
                raise
            cleanup = await clear_stale_locks(kube, repo.restic, repo.namespace)
            if cleanup is None or not cleanup.removed:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def backup_host(
    kube: Kube,
    repo: RepositoryHandle,
    request: BackupRequest,
    namespace: str,
    *,
    done: Sequence[SnapshotStats] = (),
    on_snapshot: Callable[[SnapshotStats], Awaitable[None]] | None = None,
) -> HostBackupStats:
    """Back up every path of `request` as its own snapshot (module docstring).

    `namespace` is where the heartbeats of this invoker's sessions live (for the
    stale-lock judgement). `done` are snapshots this host already wrote in this session
    (an earlier executor recorded them on the heartbeat, then died): their paths are
    not backed up again, so a killed executor leaves no second, unreported snapshot.
    `on_snapshot` hears of each new snapshot as soon as restic reports it.
    """
    started = time.monotonic()
    if not request.paths:
        return failed_host(
            request.hostname,
            "spec.target.paths is empty: nothing to back up; list the directories to back up",
            started,
        )
    missing = await asyncio.to_thread(lambda: [p for p in request.paths if not os.path.exists(p)])
    if missing:
        return failed_host(request.hostname, failed_paths_message(missing), started)
    # Stale locks are not cleared up front: `restic backup` takes a shared lock and
    # runs beside a dead backup's lock; a lock that does block it (an exclusive one)
    # is judged and cleared when the backup reports it (`_backup_path`), as forget does.
    snapshots: list[SnapshotStats] = []
    errors: list[str] = []
    earlier = {s.path: s for s in done if s.path}
    for path in request.paths:
        if path in earlier:
            snapshots.append(earlier[path])
            log.info(
                "%s of host %s is already in snapshot %s (written by an earlier executor "
                "of this session); not backed up again",
                path,
                request.hostname,
                earlier[path].name,
            )
            continue
        try:
            summary = await _backup_path(kube, repo, request, path)
        except BackupIncomplete as exc:
            sid = (exc.summary.snapshot_id or "")[:8] if exc.summary else ""
            errors.append(
                f"{path}: restic could not read every file, so snapshot {sid or '?'} is "
                f"incomplete and not counted: {exc.message} (hint: {exc.hint})"
            )
            continue
        except ResticError as exc:
            errors.append(f"{path}: {exc}{await _written_anyway(repo, request, path)}")
            if isinstance(exc, _FATAL):
                break
            continue
        snapshots.append(snapshot_stats(path, summary))
        if on_snapshot is not None:
            await on_snapshot(snapshots[-1])
        log.info(
            "backed up %s of host %s as snapshot %s",
            path,
            request.hostname,
            (summary.snapshot_id or "")[:8],
        )
    elapsed = format_duration(time.monotonic() - started)
    if errors:
        return HostBackupStats(
            hostname=request.hostname,
            phase="Failed",
            duration=elapsed,
            snapshots=snapshots or None,
            error="; ".join(errors),
        )
    return HostBackupStats(
        hostname=request.hostname, phase="Succeeded", duration=elapsed, snapshots=snapshots
    )


async def _written_anyway(repo: RepositoryHandle, request: BackupRequest, path: str) -> str:
    """A failed restic may have written the snapshot before it could name it (killed
    at the very end): the note naming this session's snapshot of `path`, if one is in
    the repository, so it is not left unnamed."""
    if not request.tags:
        return ""
    try:
        found = await repo.restic.snapshots(
            host=request.hostname, paths=[path], tags=request.tags, no_lock=True
        )
    except ResticError:
        return ""
    names = ", ".join(f"snapshot {s.short_id[:8]}" for s in found)
    return f" (restic wrote {names} of this session before it failed; not counted)" if names else ""


def request_from_target(
    hostname: str,
    paths: Sequence[str] | None,
    excludes: Sequence[str] | None,
    args: Sequence[str] | None,
    session: str = "",
) -> BackupRequest:
    """A BackupRequest from a BackupTarget's fields (None = empty), its snapshots
    tagged with `session` when given."""
    return BackupRequest(
        hostname=hostname,
        paths=tuple(p for p in paths or () if p),
        excludes=tuple(e for e in excludes or () if e),
        args=tuple(a for a in args or () if a),
        tags=(session_tag(session),) if session else (),
    )
