"""One host's backup in one BackupSession, from heartbeat to stats entry.

What it is for: the sequence every backup executor (sidecar, job steps) follows for
its host, in three parts the job model can split across its containers:

* `take_backup()` — run the target's preBackup hook (`hooks`; a failed one fails the
  host before the repository is opened), open the Repository, run the pre-backup action
  `InitializeBackendRepository` when assigned (-> session condition
  `BackendRepositoryInitialized`, False with restic's message on failure; without a
  restic run when the Repository's status records a backup already), and back up
  the host's paths (`hostbackup.backup_host`). Never raises for a backup problem: the
  result is a Failed `HostBackupStats` with an error a person can act on.
* `report_host()` — if this host succeeded and completes the target that carries the
  post-backup actions, run them (`postbackup`) *before* writing its stats entry, then
  the postBackup hook (per its executionPolicy), then upsert the entry (by hostname)
  with the hooks' conditions, emit `HostBackupSucceeded|Failed` on the session and
  push the host metrics.
* `back_up_host()` — both, inside the host's heartbeat Lease (`leases.Heartbeat`),
  which is deleted once the stats entry is written. When the agent is stopped
  mid-backup (SIGTERM) it records the host Failed on its way out.

Not for: finding sessions (the sidecar's watch, the steps' flags).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stash.agent.context import AgentContext, BackupInvoker
from stash.agent.hooks import post_backup_hook, pre_backup_hook, with_hook_conditions
from stash.agent.hostbackup import (
    BackupRequest,
    backup_host,
    failed_host,
    initialize_repository,
    recorded_backups,
    request_from_target,
)
from stash.agent.leases import Heartbeat
from stash.agent.postbackup import run_post_backup_actions
from stash.agent.repository import AgentError, RepositoryHandle, describe, open_repository
from stash.agent.stats import (
    INITIALIZE_REPOSITORY,
    Assignment,
    is_last_host,
    with_backup_condition,
    with_host_stats,
)
from stash.api.backupsession import BackupSessionStatus, HostBackupStats, SnapshotStats
from stash.api.common import HookExecution
from stash.contract import phases as P
from stash.contract.resources import BACKUPSESSIONS
from stash.contract.sessions import written_note
from stash.kube.client import JSON
from stash.kube.conditions import is_true
from stash.kube.events import NORMAL
from stash.kube.status import update_status
from stash.restic import ResticError
from stash.sessionmetrics import host_backup_registry, push

__all__ = ["BackupOutcome", "HostBackup", "back_up_host", "report_host", "take_backup"]

log = logging.getLogger(__name__)


HostBackup = Callable[[RepositoryHandle], Awaitable[HostBackupStats]]
"""What backs up one host into an open repository (default: its paths)."""


@dataclass(frozen=True)
class BackupOutcome:
    """A host's backup result and the repository it went to (None if unopened)."""

    host: HostBackupStats
    repo: RepositoryHandle | None


async def _initialize(ctx: AgentContext, session: str, repo: RepositoryHandle) -> None:
    live = await ctx.kube.get(BACKUPSESSIONS, session, ctx.namespace)
    status = BackupSessionStatus.model_validate(live.get("status") or {})
    if is_true(status.conditions, P.BACKEND_REPOSITORY_INITIALIZED):
        return
    recorded = recorded_backups(repo)
    if recorded:
        # No probe (a restic start-up): a repository deleted since fails the backup with
        # RepositoryNotFound, worded for this case (`hostbackup`).
        await _set_condition(
            ctx, session, True, "BackendRepositoryFound", f"{recorded}; not probed again"
        )
        return
    try:
        result = await initialize_repository(repo)
    except ResticError as exc:
        message = f"could not open or create the restic repository {repo.display}: {exc}"
        await _set_condition(ctx, session, False, "FailedToInitializeBackendRepository", message)
        raise AgentError(message) from None
    verb = "created" if result.created else "found"
    await _set_condition(
        ctx, session, True, "BackendRepositoryFound", f"{verb} the restic repository {repo.display}"
    )


async def _set_condition(
    ctx: AgentContext, session: str, ok: bool, reason: str, message: str
) -> None:
    await update_status(
        ctx.kube,
        BACKUPSESSIONS,
        session,
        ctx.namespace,
        lambda live: with_backup_condition(
            live, P.BACKEND_REPOSITORY_INITIALIZED, ok, reason, message
        ),
    )


async def _backup_paths(
    ctx: AgentContext, repo: RepositoryHandle, request: BackupRequest, heartbeat: Heartbeat | None
) -> HostBackupStats:
    """Back up the request's paths; with a `heartbeat`, each snapshot is recorded on it as
    restic reports it and the paths an earlier executor of this session recorded are
    not backed up again (a killed executor's snapshots are not orphaned)."""
    done: list[SnapshotStats] = []
    on_snapshot = None
    if heartbeat is not None:
        done = [SnapshotStats.model_validate(e) for e in heartbeat.recorded()]

        async def on_snapshot(snapshot: SnapshotStats) -> None:
            await heartbeat.record_snapshot(snapshot.to_wire())

    return await backup_host(
        ctx.kube, repo, request, ctx.namespace, done=done, on_snapshot=on_snapshot
    )


async def take_backup(
    ctx: AgentContext,
    invoker: BackupInvoker,
    session: JSON,
    assignment: Assignment,
    hostname: str,
    *,
    paths: tuple[str, ...] | None = None,
    excludes: tuple[str, ...] | None = None,
    perform: HostBackup | None = None,
    heartbeat: Heartbeat | None = None,
) -> BackupOutcome:
    """Open the repository, run the pre-backup action if assigned, back up the host.

    `paths`/`excludes` override the invoker's target (the job model passes its flags);
    `perform` replaces the backup of paths (a database step streams a dump instead).
    Each snapshot is recorded on the started `heartbeat` (of paths as restic reports
    it, of `perform` when it returns), and the paths an earlier executor of this
    session recorded there are not backed up again.
    """
    target = invoker.target
    request = request_from_target(
        hostname,
        paths if paths is not None else target.paths,
        excludes if excludes is not None else target.exclude,
        target.args,
        session["metadata"]["name"],
    )
    repo: RepositoryHandle | None = None
    pre = invoker.hooks.pre_backup if invoker.hooks else None
    executed: list[HookExecution] = []
    if pre is not None:
        result = await pre_backup_hook(ctx, pre, session, hostname)
        run = result.execution()
        if not result.ok:  # recorded with the host's entry (`report_host`)
            host = failed_host(hostname, result.message)
            host.hooks = [run]
            return BackupOutcome(host, None)
        await update_status(
            ctx.kube,
            BACKUPSESSIONS,
            session["metadata"]["name"],
            ctx.namespace,
            lambda live: with_hook_conditions(live, assignment.target_index, [run]),
        )
        executed.append(run)
    try:
        repo = await open_repository(
            ctx.kube, invoker.repository_name, invoker.repository_namespace, ctx.settings
        )
        if INITIALIZE_REPOSITORY in assignment.pre_actions:
            await _initialize(ctx, session["metadata"]["name"], repo)
        if perform is not None:
            host = await perform(repo)
            if heartbeat is not None:  # as the snapshots of paths are
                for snapshot in host.snapshots or []:
                    await heartbeat.record_snapshot(snapshot.to_wire())
        else:
            host = await _backup_paths(ctx, repo, request, heartbeat)
    except (AgentError, ResticError) as exc:
        host = failed_host(hostname, describe(exc))
    host.hooks = executed or None
    return BackupOutcome(host, repo)


async def report_host(
    ctx: AgentContext,
    invoker: BackupInvoker,
    session: JSON,
    assignment: Assignment,
    outcome: BackupOutcome,
) -> None:
    """Post-backup actions if this host completes the session, then its stats entry,
    Event and metrics (module docstring)."""
    name = session["metadata"]["name"]
    host = outcome.host
    hostname = host.hostname or ""
    if host.phase == "Succeeded" and assignment.post_actions and outcome.repo is not None:
        live = await ctx.kube.get(BACKUPSESSIONS, name, ctx.namespace)
        if is_last_host(live, assignment.target_index, hostname):
            log.info(
                "%s: host %s completes the target; running post-backup actions", name, hostname
            )
            await run_post_backup_actions(
                ctx,
                invoker,
                live,
                assignment.target_index,
                assignment.post_actions,
                outcome.repo,
                hostname,
                len(host.snapshots or []),
            )
    post = invoker.hooks.post_backup if invoker.hooks else None
    pre_failed = any(h.name == "preBackup" and h.phase == "Failed" for h in host.hooks or [])
    if post is not None and not pre_failed:  # §6.3: no postBackup after a failed preBackup
        live = await ctx.kube.get(BACKUPSESSIONS, name, ctx.namespace)
        hook = await post_backup_hook(ctx, post, live, assignment.target_index, host)
        host.hooks = [*(host.hooks or []), hook.execution()]
    conditions = [h for h in host.hooks or [] if h.name == "postBackup" or h.phase == "Failed"]

    def record(live: JSON) -> JSON | None:
        updated = with_host_stats(live, assignment.target_index, host)
        if updated is None or not conditions:
            return updated
        index = assignment.target_index
        return with_hook_conditions({**live, "status": updated}, index, conditions) or updated

    written = await update_status(ctx.kube, BACKUPSESSIONS, name, ctx.namespace, record)
    if written is None:
        log.warning("%s: session already final; stats of host %s not recorded", name, hostname)
    obj = written or session
    if host.phase == "Succeeded":
        count = len(host.snapshots or [])
        await ctx.recorder.emit(
            obj,
            NORMAL,
            "HostBackupSucceeded",
            f"backup of host {hostname} succeeded: {count} snapshot(s) in {host.duration}",
        )
    else:
        await ctx.recorder.warn(
            obj, "HostBackupFailed", f"backup of host {hostname} failed: {host.error}"
        )
    if ctx.push_url:
        repo_name = outcome.repo.name if outcome.repo else invoker.repository_name
        labels = ctx.metric_labels(repo_name)
        registry = host_backup_registry(labels, host)
        result = await push(ctx.push_url, labels.grouping(hostname), registry)
        level = logging.INFO if result.ok else logging.WARNING
        log.log(level, "%s: host metrics: %s", name, result.message)


async def back_up_host(
    ctx: AgentContext,
    invoker: BackupInvoker,
    session: JSON,
    assignment: Assignment,
    hostname: str,
    *,
    unreported: dict[str, BackupOutcome] | None = None,
) -> bool:
    """Back up `hostname` for `session` under its heartbeat and report it.

    Returns False without doing anything when another live executor holds the host's
    heartbeat (try again later), True once the host's result is recorded.

    `unreported` (by session name) keeps a backup whose report failed (the apiserver
    did not answer): the caller's next attempt reports that result instead of backing
    the host up again, so no snapshot is left that no session names.
    """
    name = session["metadata"]["name"]
    heartbeat = Heartbeat(ctx.kube, session, hostname, ctx.pod.pod_name, ledger=ctx.settings.ledger)
    holder = await heartbeat.holder_elsewhere()
    if holder is not None:
        log.info("%s: host %s is being backed up by %s; waiting", name, hostname, holder)
        return False
    await heartbeat.start()
    written = False
    kept = unreported if unreported is not None else {}
    try:
        outcome = kept.get(name)
        if outcome is None:
            log.info("%s: backing up host %s", name, hostname)
            outcome = await take_backup(
                ctx, invoker, session, assignment, hostname, heartbeat=heartbeat
            )
            kept[name] = outcome
        else:
            log.info("%s: reporting the earlier backup of host %s again", name, hostname)
        await report_host(ctx, invoker, session, assignment, outcome)
        kept.pop(name, None)
        written = True
        return True
    except asyncio.CancelledError:
        stopped = failed_host(
            hostname,
            "the backup was interrupted: the stash agent was stopped mid-backup (pod "
            "deleted or restarted); the next session backs this host up again"
            + written_note(heartbeat.recorded()),
        )

        def mark(live: JSON) -> JSON | None:
            targets = (live.get("status") or {}).get("targets") or []
            entry = (
                targets[assignment.target_index] if assignment.target_index < len(targets) else {}
            )
            if any(h.get("hostname") == hostname for h in entry.get("stats") or []):
                return None  # the real result is already recorded
            return with_host_stats(live, assignment.target_index, stopped)

        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.shield(update_status(ctx.kube, BACKUPSESSIONS, name, ctx.namespace, mark)),
                5,
            )
            written = True
        raise
    finally:
        await heartbeat.stop(delete=written)
