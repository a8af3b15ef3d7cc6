"""What the agent knows about a repository after a backup without running restic.

What it is for: the post-backup actions' shortcuts (issue #19), pure functions of the
Repository as read at the session's start, the live session and what this agent's
restic driver did: how many snapshots the repository holds now
(`snapshots_after_session`), whether `keepLast` alone keeps all of them, so `restic
forget` could remove nothing (`nothing_to_forget`), and the repository's size from the
recorded size plus what this session's backups added (`size_after_session`). Each
returns None when the answer would not be exact enough; the caller then runs restic.

Not for: running restic or writing status (`postbackup`).
"""

from __future__ import annotations

from stash.agent.repository import RepositoryHandle
from stash.api.common import RetentionPolicy
from stash.kube.client import JSON
from stash.restic.models import parse_bytes

__all__ = ["nothing_to_forget", "size_after_session", "snapshots_after_session"]


def snapshots_after_session(
    repo: RepositoryHandle, live: JSON, hostname: str, own: int
) -> int | None:
    """How many snapshots the repository holds after this session, without restic: the
    Repository's count (0 when this session created it) plus this session's snapshots
    (`own`: this host's, whose entry is not written yet); None when the Repository
    records no count."""
    status = repo.model.status
    before = 0 if repo.restic.created_repository else (status.snapshot_count if status else None)
    if before is None:
        return None
    others = sum(
        len(host.get("snapshots") or [])
        for target in (live.get("status") or {}).get("targets") or []
        for host in target.get("stats") or []
        if host.get("hostname") != hostname
    )
    return before + others + own


def nothing_to_forget(policy: RetentionPolicy, count: int | None, host: str) -> str | None:
    """The retention message when keepLast alone keeps all `count` snapshots (restic
    keeps the union of the rules, so forget could remove nothing); else None."""
    keep = policy.keep_last
    if keep is None or count is None or policy.dry_run or not (keep < 0 or keep >= count):
        return None
    return (
        f"host {host} applied retention policy {policy.name}: kept all {count} snapshot(s), "
        f"no more than keepLast {keep} (the Repository's count plus this session's), so "
        "restic forget had nothing to remove and did not run"
    )


def size_after_session(repo: RepositoryHandle, live: JSON, hostname: str, own: int) -> int | None:
    """The repository's size without `restic stats`: its last recorded size plus what
    this agent's backups added (from 0 when it created the repository); None when that
    would not be exact enough (another host of the session wrote snapshots, or not all
    of this host's `own` snapshots were written by this agent, or nothing is known)."""
    if not repo.restic.backed_up or len(repo.restic.backed_up) != own:
        return None
    for target in (live.get("status") or {}).get("targets") or []:
        for host in target.get("stats") or []:
            if host.get("hostname") != hostname and host.get("snapshots"):
                return None
    status = repo.model.status
    if repo.restic.created_repository:
        before = 0
    elif status is None or not status.total_size:
        return None
    else:
        try:
            before = parse_bytes(status.total_size)
        except ValueError:
            return None
    return before + sum(s.data_added_packed for s in repo.restic.backed_up)
