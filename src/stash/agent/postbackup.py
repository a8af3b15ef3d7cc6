"""Post-backup actions of a session, run once by the host that completes it (§5.7).

What it is for: `run_post_backup_actions()` — after the last host of the last target
has backed up successfully (and before it writes its own stats entry, so the operator
cannot complete the session before these results are in), it runs the actions the
operator assigned to the target:

1. `ApplyRetentionPolicy` — `restic forget` with the invoker's retentionPolicy and no
   `--host` (restic groups by host and paths). Once per session: skipped when the
   session already has `RetentionPolicyApplied`. On a lock conflict the stale-lock
   policy runs and forget is retried once. -> `RetentionPolicyApplied`.
2. `VerifyRepositoryIntegrity` — `restic check` and `restic stats --mode raw-data`
   (both `--no-lock`, as Stash, so other writers are not blocked).
   -> `RepositoryIntegrityVerified`.
3. `SendRepositoryMetrics` — push the repository metrics to the Pushgateway (with none
   configured the operator exports them on its /metrics). -> `RepositoryMetricsPushed`,
   False when the push failed (which does not fail the session).

then writes the Repository's status: integrity, totalSize (restic's human string),
snapshotCount, snapshotsRemovedOnLastCleanup, lastBackupTime (the session's creation
time) and firstBackupTime when unset. A failed retention or check sets its condition False
with restic's message, and the session ends Failed although the data was uploaded.

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


async def _condition(
    ctx: AgentContext, session: str, type_: str, ok: bool, reason: str, message: str
) -> None:
    log.log(logging.INFO if ok else logging.WARNING, "%s: %s=%s: %s", session, type_, ok, message)
    await update_status(
        ctx.kube,
        BACKUPSESSIONS,
        session,
        ctx.namespace,
        lambda live: with_backup_condition(live, type_, ok, reason, message),
    )


def _retention_message(policy: RetentionPolicy, result: ForgetResult, host: str) -> str:
    verb = "would remove" if result.dry_run else "removed"
    text = (
        f"host {host} applied retention policy {policy.name}: kept {len(result.kept)} and "
        f"{verb} {len(result.removed)} snapshot(s) (grouped by host and path)"
    )
    return text + ("; unreferenced data pruned" if result.pruned else "")


async def _apply_retention(
    ctx: AgentContext, repo: RepositoryHandle, policy: RetentionPolicy, host: str
) -> tuple[bool, str, int | None, int | None]:
    """(ok, message, snapshots removed, snapshots left). `forget` runs over every group
    of the repository, so what it keeps is every snapshot left: the count comes free."""
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
    try:
        check = await repo.restic.check(no_lock=True)
    except ResticError as exc:
        facts.integrity = False
        return False, f"restic check could not run: {exc}"
    facts.integrity = check.ok
    try:
        stats = await repo.restic.stats(no_lock=True)
        facts.size = stats.total_size
    except ResticError as exc:
        log.warning("restic stats failed on %s: %s", repo.display, exc)
    if not check.ok:
        found = "; ".join(check.messages[-5:]) or f"{check.num_errors} error(s)"
        return False, (
            f"restic check found errors in {repo.display}: {found} (hint: run `kubectl stash "
            "check` and follow restic's advice, e.g. `restic repair index`)"
        )
    size = format_bytes(facts.size) if facts.size is not None else "unknown size"
    return True, f"restic check found no errors; the repository stores {size}"


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
) -> None:
    """Run `actions` for `session` and record them (module docstring)."""
    name = session["metadata"]["name"]
    live = await wait_for_other_targets(ctx, name, index)
    conds = BackupSessionStatus.model_validate(live.get("status") or {}).conditions
    facts = _Facts()
    if APPLY_RETENTION in actions:
        if get_condition(conds, P.RETENTION_POLICY_APPLIED) is None:
            ok, message, facts.removed, facts.count = await _apply_retention(
                ctx, repo, invoker.retention, hostname
            )
            reason = "SuccessfullyAppliedRetentionPolicy" if ok else "FailedToApplyRetentionPolicy"
            await _condition(ctx, name, P.RETENTION_POLICY_APPLIED, ok, reason, message)
        else:
            log.info("%s: retention policy already applied in this session", name)
    if VERIFY_INTEGRITY in actions:
        ok, message = await _verify(repo, facts)
        reason = (
            "SuccessfullyVerifiedRepositoryIntegrity" if ok else "FailedToVerifyRepositoryIntegrity"
        )
        await _condition(ctx, name, P.REPOSITORY_INTEGRITY_VERIFIED, ok, reason, message)
    if facts.count is None:  # retention did not run (or was a dry run) in this pass
        try:
            facts.count = len(await repo.restic.snapshots(no_lock=True))
        except ResticError as exc:
            log.warning("could not count the snapshots of %s: %s", repo.display, exc)
    if SEND_METRICS in actions:
        ok, reason, message = await _send_metrics(ctx, repo, facts)
        await _condition(ctx, name, P.REPOSITORY_METRICS_PUSHED, ok, reason, message)
    created = session["metadata"].get("creationTimestamp")
    when = (
        dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        if created
        else dt.datetime.now(dt.UTC).replace(microsecond=0)
    )
    await _write_repository_status(ctx, repo, facts, when)
