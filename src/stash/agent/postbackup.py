"""Post-backup actions of a session, run once by the host that completes it (§5.7).

What it is for: `run_post_backup_actions()` — after the last host of the last target
has backed up successfully (and before it writes its own stats entry, so the operator
cannot complete the session before these results are in), it runs the actions the
operator assigned to the target:

1. `ApplyRetentionPolicy` — `restic forget` with the invoker's retentionPolicy and no
   `--host` (restic groups by host and paths). Once per session: skipped when the
   session already has `RetentionPolicyApplied`. On a lock conflict the stale-lock
   policy runs and forget is retried once. Not run when `keepLast` alone keeps every
   snapshot the repository holds by the Repository's count plus this session's (it
   could remove nothing). -> `RetentionPolicyApplied`.
2. `VerifyRepositoryIntegrity` — `restic check` and `restic stats --mode raw-data`
   side by side (both `--no-lock`, as Stash, so other writers are not blocked).
   -> `RepositoryIntegrityVerified`. The operator assigns it only when a check is due
   (`integrity_check_interval`); a session without it records the last check's result
   (reason `RepositoryIntegrityCheckNotDue`), and the repository's size is the last
   known size plus what this session's backups added (restic's `data_added_packed`),
   unless retention removed snapshots or another host wrote snapshots too: then
   `restic stats` runs alone.
3. `SendRepositoryMetrics` — push the repository metrics to the Pushgateway (with none
   configured the operator exports them on its /metrics). -> `RepositoryMetricsPushed`,
   False when the push failed (which does not fail the session).

The conditions are written in one status write once every action has run, then the
Repository's status: integrity (and lastIntegrityCheckTime when the check ran),
totalSize (restic's human string), snapshotCount, snapshotsRemovedOnLastCleanup,
lastBackupTime (the session's creation time) and firstBackupTime when unset. A failed
retention or check sets its condition False with restic's message, and the session
ends Failed although the data was uploaded.

Not for: deciding who is the last host (`stats.is_last_host`) or the backup itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

from stash.agent.context import AgentContext, BackupInvoker
from stash.agent.lockpolicy import clear_stale_locks
from stash.agent.repofacts import nothing_to_forget, size_after_session, snapshots_after_session
from stash.agent.repository import RepositoryHandle
from stash.agent.stats import (
    APPLY_RETENTION,
    SEND_METRICS,
    VERIFY_INTEGRITY,
    other_targets_done,
    with_backup_condition,
)
from stash.api.backupsession import BackupSessionStatus
from stash.api.common import RetentionPolicy
from stash.api.repository import RepositoryStatus
from stash.contract import phases as P
from stash.contract.resources import BACKUPSESSIONS, REPOSITORIES
from stash.kube.client import JSON
from stash.kube.conditions import get_condition
from stash.kube.status import update_status
from stash.restic import ForgetResult, RepositoryLocked, ResticError, format_bytes
from stash.sessionmetrics import (
    RepositoryFacts,
    backend_location,
    push,
    repository_registry,
)

__all__ = ["run_post_backup_actions", "wait_for_other_targets"]

log = logging.getLogger(__name__)

OTHER_TARGETS_POLL = 5.0
OTHER_TARGETS_WAIT = 30 * 60.0


@dataclass
class _Facts:
    removed: int | None = None
    integrity: bool | None = None
    size: int | None = None
    count: int | None = None
    checked: bool = False
    """`restic check` ran in this session (lastIntegrityCheckTime is now)."""


async def wait_for_other_targets(ctx: AgentContext, session: str, index: int) -> JSON:
    """Poll the session until every other target is done (≤30 min); the live session."""
    deadline = time.monotonic() + OTHER_TARGETS_WAIT
    said = False
    while True:
        live = await ctx.kube.get(BACKUPSESSIONS, session, ctx.namespace)
        if other_targets_done(live, index) or time.monotonic() > deadline:
            return live
        if not said:
            log.info(
                "waiting (up to %.0fs) for the other targets of %s to finish",
                OTHER_TARGETS_WAIT,
                session,
            )
            said = True
        await asyncio.sleep(OTHER_TARGETS_POLL)


Condition = tuple[str, bool, str, str]
"""(type, ok, reason, message) of a session condition a post-backup action sets."""


async def _record_conditions(ctx: AgentContext, session: str, conds: list[Condition]) -> None:
    """Set the actions' session conditions in one status write."""
    for type_, ok, _reason, message in conds:
        log.log(
            logging.INFO if ok else logging.WARNING, "%s: %s=%s: %s", session, type_, ok, message
        )

    def compute(live: JSON) -> JSON | None:
        out: JSON | None = None
        for type_, ok, reason, message in conds:
            current = live if out is None else {**live, "status": out}
            out = with_backup_condition(current, type_, ok, reason, message)
            if out is None:
                return None
        return out

    if conds:
        await update_status(ctx.kube, BACKUPSESSIONS, session, ctx.namespace, compute)


def _retention_message(policy: RetentionPolicy, result: ForgetResult, host: str) -> str:
    verb = "would remove" if result.dry_run else "removed"
    text = (
        f"host {host} applied retention policy {policy.name}: kept {len(result.kept)} and "
        f"{verb} {len(result.removed)} snapshot(s) (grouped by host and path)"
    )
    return text + ("; unreferenced data pruned" if result.pruned else "")


async def _apply_retention(
    ctx: AgentContext,
    repo: RepositoryHandle,
    policy: RetentionPolicy,
    live: JSON,
    host: str,
    own: int,
) -> tuple[bool, str, int | None, int | None]:
    """(ok, message, snapshots removed, snapshots left). `forget` runs over every group
    of the repository, so what it keeps is every snapshot left: the count comes free."""
    count = snapshots_after_session(repo, live, host, own)
    skipped = nothing_to_forget(policy, count, host)
    if skipped is not None:
        return True, skipped, 0, count
    try:
        try:
            result = await repo.restic.forget(policy)
        except RepositoryLocked:
            await clear_stale_locks(ctx.kube, repo.restic, repo.namespace)
            result = await repo.restic.forget(policy)
    except ResticError as exc:
        return False, f"restic forget failed: {exc}", None, None
    removed = 0 if result.dry_run else len(result.removed)
    return (
        True,
        _retention_message(policy, result, host),
        removed,
        (None if result.dry_run else len(result.kept)),
    )


async def _verify(repo: RepositoryHandle, facts: _Facts) -> tuple[bool, str]:
    """`restic check` and `restic stats` side by side (one restic start-up's wait)."""
    check_run, stats_run = await asyncio.gather(
        repo.restic.check(no_lock=True), repo.restic.stats(no_lock=True), return_exceptions=True
    )
    facts.checked = True
    if isinstance(stats_run, ResticError):
        log.warning("restic stats failed on %s: %s", repo.display, stats_run)
    elif isinstance(stats_run, BaseException):
        raise stats_run
    else:
        facts.size = stats_run.total_size
    if isinstance(check_run, ResticError):
        facts.integrity = False
        return False, f"restic check could not run: {check_run}"
    if isinstance(check_run, BaseException):
        raise check_run
    facts.integrity = check_run.ok
    if not check_run.ok:
        found = "; ".join(check_run.messages[-5:]) or f"{check_run.num_errors} error(s)"
        return False, (
            f"restic check found errors in {repo.display}: {found} (hint: run `kubectl stash "
            "check` and follow restic's advice, e.g. `restic repair index`)"
        )
    size = format_bytes(facts.size) if facts.size is not None else "unknown size"
    return True, f"restic check found no errors; the repository stores {size}"


def _not_due(repo: RepositoryHandle) -> tuple[bool, str]:
    """The integrity condition of a session that runs no check: the last check's result
    (the operator assigns the check whenever that result is not good)."""
    if repo.restic.created_repository:
        return True, (
            f"this session created {repo.display}: its first restic check is due one "
            "integrity_check_interval (operator setting) from now"
        )
    status = repo.model.status
    if status is None or status.integrity is None:
        return True, f"no restic check of {repo.display} is recorded yet: the next session runs one"
    last = status.last_integrity_check_time
    good = status.integrity is True
    when = (
        last.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if last is not None
        else "an earlier session"
    )
    if good:
        return True, (
            f"restic check is not due in this session: it found no errors in {repo.display} "
            f"at {when} (operator setting integrity_check_interval)"
        )
    return False, f"restic check is not due, but the last one at {when} did not pass"


async def _send_metrics(
    ctx: AgentContext, repo: RepositoryHandle, facts: _Facts
) -> tuple[bool, str, str]:
    """(ok, reason, message) of `RepositoryMetricsPushed`: pushed, failed with the
    Pushgateway's reason, or left to the operator's /metrics when none is configured."""
    if not ctx.metrics_enabled:
        return (
            True,
            "RepositoryMetricsDisabled",
            "metrics are disabled (--metrics-enabled=false); nothing pushed",
        )
    if not ctx.pushgateway_url:
        return (
            True,
            "RepositoryMetricsExportedByOperator",
            "no Pushgateway configured: the operator exports the repository metrics on "
            "its /metrics",
        )
    _provider, bucket, prefix = backend_location(
        repo.model.spec.backend if repo.model.spec else None
    )
    labels = ctx.metric_labels(repo.name)
    registry = repository_registry(
        labels,
        RepositoryFacts(
            name=repo.name,
            namespace=repo.namespace,
            backend=repo.provider,
            bucket=bucket,
            prefix=prefix,
            integrity=bool(facts.integrity),
            size_bytes=facts.size or 0,
            snapshot_count=facts.count or 0,
            snapshots_removed=facts.removed or 0,
        ),
    )
    result = await push(ctx.pushgateway_url, labels.grouping(), registry)
    if result.ok:
        return True, "SuccessfullyPushedRepositoryMetrics", f"repository metrics {result.message}"
    return (
        False,
        "FailedToPushRepositoryMetrics",
        f"repository metrics not pushed: {result.message}",
    )


async def _write_repository_status(
    ctx: AgentContext, repo: RepositoryHandle, facts: _Facts, backup_time: dt.datetime
) -> None:
    def compute(live: JSON) -> JSON:
        st = RepositoryStatus.model_validate(live.get("status") or {})
        if facts.integrity is not None:
            st.integrity = facts.integrity
        if facts.checked:
            st.last_integrity_check_time = dt.datetime.now(dt.UTC).replace(microsecond=0)
        if facts.size is not None:
            st.total_size = format_bytes(facts.size)
        if facts.count is not None:
            st.snapshot_count = facts.count
        if facts.removed is not None:
            st.snapshots_removed_on_last_cleanup = facts.removed
        if st.last_backup_time is None or st.last_backup_time < backup_time:
            st.last_backup_time = backup_time
        if st.first_backup_time is None:
            st.first_backup_time = backup_time
        return st.to_wire()

    await update_status(ctx.kube, REPOSITORIES, repo.name, repo.namespace, compute)


async def run_post_backup_actions(
    ctx: AgentContext,
    invoker: BackupInvoker,
    session: JSON,
    index: int,
    actions: tuple[str, ...],
    repo: RepositoryHandle,
    hostname: str,
    own_snapshots: int,
) -> None:
    """Run `actions` for `session` and record them (module docstring); `own_snapshots`
    is how many snapshots this host wrote in the session (its entry is not written
    yet)."""
    name = session["metadata"]["name"]
    live = await wait_for_other_targets(ctx, name, index)
    conds = BackupSessionStatus.model_validate(live.get("status") or {}).conditions
    facts = _Facts()
    done: list[Condition] = []
    if APPLY_RETENTION in actions:
        if get_condition(conds, P.RETENTION_POLICY_APPLIED) is None:
            ok, message, facts.removed, facts.count = await _apply_retention(
                ctx, repo, invoker.retention, live, hostname, own_snapshots
            )
            reason = "SuccessfullyAppliedRetentionPolicy" if ok else "FailedToApplyRetentionPolicy"
            done.append((P.RETENTION_POLICY_APPLIED, ok, reason, message))
        else:
            log.info("%s: retention policy already applied in this session", name)
    if VERIFY_INTEGRITY in actions:
        ok, message = await _verify(repo, facts)
        reason = (
            "SuccessfullyVerifiedRepositoryIntegrity" if ok else "FailedToVerifyRepositoryIntegrity"
        )
        done.append((P.REPOSITORY_INTEGRITY_VERIFIED, ok, reason, message))
    elif actions:
        if repo.restic.created_repository:
            facts.checked, facts.integrity = True, True  # the schedule starts at creation
        ok, message = _not_due(repo)
        done.append(
            (P.REPOSITORY_INTEGRITY_VERIFIED, ok, "RepositoryIntegrityCheckNotDue", message)
        )
        await _size_without_check(repo, facts, live, hostname, own_snapshots)
    if facts.count is None:  # retention did not run (or was a dry run) in this pass
        try:
            facts.count = len(await repo.restic.snapshots(no_lock=True))
        except ResticError as exc:
            log.warning("could not count the snapshots of %s: %s", repo.display, exc)
    if SEND_METRICS in actions:
        ok, reason, message = await _send_metrics(ctx, repo, facts)
        done.append((P.REPOSITORY_METRICS_PUSHED, ok, reason, message))
    await _record_conditions(ctx, name, done)
    created = session["metadata"].get("creationTimestamp")
    when = (
        dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        if created
        else dt.datetime.now(dt.UTC).replace(microsecond=0)
    )
    await _write_repository_status(ctx, repo, facts, when)


async def _size_without_check(
    repo: RepositoryHandle, facts: _Facts, live: JSON, hostname: str, own: int
) -> None:
    """The size in a session without a check: known from the last one plus this session's
    additions, else (retention removed snapshots, other hosts wrote) `restic stats`."""
    known = None if facts.removed else size_after_session(repo, live, hostname, own)
    if known is not None:
        facts.size = known
        return
    try:
        facts.size = (await repo.restic.stats(no_lock=True)).total_size
    except ResticError as exc:
        log.warning("restic stats failed on %s: %s", repo.display, exc)
