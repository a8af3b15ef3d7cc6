"""The targets of a BackupSession: whose they are, and when each one starts (§5.4 step 6).

What it is for: the BackupSession reconciler's view of its invoker — a
BackupConfiguration (one target) or a BackupBatch (one target per member, read through
`stash.contract.batches.backup_members`) — and the initiation of targets:

* `session_invoker()` — the invoker as a BackupConfiguration-shaped whole (the batch's
  shared fields: time-out, retries, history limit, pause, phase; the first member's
  target for labels), its members, and whether they run in sequence;
* `pending_targets()` (pure) — which members to initiate now and which get a bare
  `{ref}` entry (Pending): in Sequential order a member starts once every earlier one
  is final (Succeeded or Failed), in Parallel order all start at once;
* `initiate_target()` — ensure the member's executor (sidecar RBAC or its Job
  `stash-backup-<session>-<index>`) and return its entry: totalHosts, the pre-backup
  action on the first target, the post-backup actions (retention once, for the whole
  shared repository) on the last;
* `merge_targets()` (pure) — those entries into the live status, by index, never
  replacing one already initiated;
* `integrity_check_due()` (pure) — whether this session's post-backup actions include
  `VerifyRepositoryIntegrity` (`restic check` on the operator's schedule,
  `integrity_check_interval`; always when the repository's integrity is not known to be
  good or the invoker's last session failed).

Not for: host stats (the agents write them) or the session's phase (`contract.phases`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import ValidationError

from stash.api import BackupBatch, BackupConfiguration, BackupSession
from stash.api.backupsession import BackupTargetStatus
from stash.api.common import BackupHooks, TargetRef
from stash.api.repository import RepositoryStatus
from stash.contract import phases as P
from stash.contract.batches import backup_members, may_start
from stash.contract.resources import TARGET_KINDS
from stash.contract.sessions import total_hosts
from stash.controllers.context import ControllerContext
from stash.controllers.provisioning import ensure_backup_executor
from stash.controllers.volumesnapshot import initiate_snapshots, is_snapshotter
from stash.kube.client import KubeError
from stash.kube.conditions import set_condition

__all__ = [
    "POST_ACTIONS",
    "PRE_ACTIONS",
    "SessionInvoker",
    "initiate_target",
    "integrity_check_due",
    "merge_targets",
    "pending_targets",
    "session_invoker",
]

PRE_ACTIONS = ["InitializeBackendRepository"]
VERIFY_INTEGRITY = "VerifyRepositoryIntegrity"
POST_ACTIONS = ["ApplyRetentionPolicy", VERIFY_INTEGRITY, "SendRepositoryMetrics"]


@dataclass(frozen=True)
class SessionInvoker:
    """A session's invoker: the whole, its members, and their order."""

    whole: BackupConfiguration
    """The invoker-level fields (a batch: its shared fields and first member's target)."""
    members: tuple[BackupConfiguration, ...]
    sequential: bool = False
    hooks: BackupHooks | None = None
    """A batch's global hooks (run by the operator: `globalhooks`)."""


def session_invoker(ctx: ControllerContext, session: BackupSession) -> SessionInvoker | None:
    """The session's invoker from the caches (None: unset, missing or unreadable)."""
    ref = session.spec.invoker if session.spec else None
    if ref is None or not ref.name:
        return None
    key = f"{session.metadata.namespace}/{ref.name}"
    if ref.kind == "BackupConfiguration":
        raw = ctx.caches.backupconfigurations.get(key)
        try:
            bc = ctx.parse(BackupConfiguration, raw) if raw is not None else None
        except ValidationError:
            return None
        return SessionInvoker(bc, (bc,)) if bc is not None else None
    if ref.kind == "BackupBatch" and ctx.caches.backupbatches is not None:
        raw = ctx.caches.backupbatches.get(key)
        try:
            batch = ctx.parse(BackupBatch, raw) if raw is not None else None
        except ValidationError:
            return None
        members = backup_members(batch) if batch is not None else []
        if batch is None or not members:
            return None
        order = batch.spec.execution_order if batch.spec else None
        hooks = batch.spec.hooks if batch.spec else None
        return SessionInvoker(members[0], tuple(members), order == "Sequential", hooks)
    return None


def _initiated(entry: BackupTargetStatus | None) -> bool:
    return entry is not None and (entry.total_hosts is not None or bool(entry.conditions))


def pending_targets(
    existing: list[BackupTargetStatus], count: int, sequential: bool
) -> tuple[list[int], list[int]]:
    """(members to initiate now, members that get a bare Pending entry) (pure)."""
    entries: list[BackupTargetStatus | None] = [
        existing[i] if i < len(existing) else None for i in range(count)
    ]

    def entry(i: int) -> BackupTargetStatus | None:
        return entries[i]

    final = [
        e is not None and _initiated(e) and P.target_phase(e) in ("Succeeded", "Failed")
        for e in entries
    ]
    allowed = may_start(sequential, final)
    start = [i for i in range(count) if allowed[i] and not _initiated(entry(i))]
    bare = [i for i in range(count) if not allowed[i] and entry(i) is None]
    return start, bare


def member_ref(member: BackupConfiguration, namespace: str) -> TargetRef:
    """A member's target ref with its namespace filled in."""
    spec = member.spec
    ref = (spec.target.ref if spec and spec.target else None) or TargetRef()
    return ref.model_copy(update={"namespace": ref.namespace or namespace})


async def initiate_target(
    ctx: ControllerContext,
    session: BackupSession,
    member: BackupConfiguration,
    index: int,
    count: int,
) -> BackupTargetStatus:
    """Ensure member `index`'s executor and return its initiated entry (module docstring)."""
    ns = str(session.metadata.namespace)
    ref = member_ref(member, ns)
    if is_snapshotter(member):  # the operator snapshots the claims: no sidecar, no Job
        return await initiate_snapshots(ctx, member, ref)
    kind = ref.kind or ""
    workload = None
    res = TARGET_KINDS.get(kind)
    if res is not None and kind in ("StatefulSet", "DaemonSet") and ref.name:
        try:
            workload = await ctx.kube.get(res, ref.name, ref.namespace)
        except KubeError:
            workload = None
    ok, message = await ensure_backup_executor(ctx, session, member, ref, index)
    conds = set_condition(
        None,
        P.BACKUP_EXECUTOR_ENSURED,
        ok,
        "SuccessfullyEnsuredBackupExecutor" if ok else "FailedToEnsureBackupExecutor",
        message,
    )
    return BackupTargetStatus(
        ref=ref,
        total_hosts=total_hosts(kind, workload),
        pre_backup_actions=PRE_ACTIONS if index == 0 else None,
        post_backup_actions=_post_actions(ctx, session, member) if index == count - 1 else None,
        conditions=conds,
    )


def merge_targets(
    live: list[BackupTargetStatus], new: list[tuple[int, BackupTargetStatus]]
) -> list[BackupTargetStatus]:
    """`new` entries placed by index into `live` (pure); an initiated entry stays."""
    out = list(live)
    for index, entry in sorted(new, key=lambda p: p[0]):
        while len(out) < index:
            out.append(BackupTargetStatus())
        if index == len(out):
            out.append(entry)
        elif not _initiated(out[index]):
            out[index] = entry
    return out


def integrity_check_due(
    status: RepositoryStatus | None, interval: float, now: dt.datetime, last_failed: bool
) -> bool:
    """Whether a session runs `restic check` (pure): always with `interval` 0 and after a
    failed session; never while the Repository records no backup (a new repository has
    nothing to check; one stash did not create is checked in its second session); else
    while its integrity is not known to be good, and when the last check is `interval`
    seconds old or more (or unknown)."""
    if interval <= 0 or last_failed:
        return True
    if status is None or not (status.snapshot_count or status.last_backup_time):
        return False
    if status.integrity is not True:
        return True
    last = status.last_integrity_check_time
    return last is None or (now - last).total_seconds() >= interval


def _last_session_failed(ctx: ControllerContext, session: BackupSession) -> bool:
    """Whether the invoker's most recent final session before `session` failed."""
    ref = session.spec.invoker if session.spec else None
    if ref is None:
        return False
    ns = session.metadata.namespace
    final = [
        raw
        for raw in ctx.caches.backupsessions.by_index("invoker", f"{ref.kind}/{ns}/{ref.name}")
        if raw["metadata"].get("name") != session.metadata.name
        and (raw.get("status") or {}).get("phase") in P.FINAL_SESSION_PHASES
        and (raw.get("status") or {}).get("phase") != "Skipped"
    ]
    if not final:
        return False
    last = max(final, key=lambda raw: str(raw["metadata"].get("creationTimestamp") or ""))
    return bool((last.get("status") or {}).get("phase") == "Failed")


def _post_actions(
    ctx: ControllerContext, session: BackupSession, member: BackupConfiguration
) -> list[str]:
    """The post-backup actions of the session's last target: `VerifyRepositoryIntegrity`
    only when the check is due (`integrity_check_due`)."""
    ns = str(session.metadata.namespace)
    repo = ctx.repository(member.spec.repository if member.spec else None, ns)
    due = integrity_check_due(
        repo.status if repo is not None else None,
        ctx.settings.integrity_check_interval,
        ctx.now(),
        _last_session_failed(ctx, session),
    )
    return POST_ACTIONS if due else [a for a in POST_ACTIONS if a != VERIFY_INTEGRITY]
