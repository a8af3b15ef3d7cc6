"""BackupSession reconciler (stash-api.md §5.4, phases §1.4).

Drives a session from Pending to a final phase without running any backup itself (the
agents write host stats into `status.targets[].stats`): defaults missing labels from
`spec.invoker`; skips when the invoker is missing, paused or not Ready, or another
session of the same invoker is Running; initiates targets (totalHosts, pre/post backup
actions); sets the deadline from `timeOut` (else the operator's
`default_session_timeout`) and fails the session with DeadlineExceeded when it passes;
fails a host whose heartbeat we saw unchanged for `executor_heartbeat_timeout`, or whose
Job failed or could not start its pod (`liveness`); on completion and for retries it
hands over to `sessionend`.

Each pass gathers its facts first (`_facts`: the skip reason, the initiated target, the
deadline, hosts whose heartbeat went stale or whose Job failed or cannot start), then a
pure decision (`_decide`) computes
the status from the *live* object (`update_status`), so host stats written concurrently
by agents are never overwritten. Not for: running backups (`stash.agent`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import aiohttp
from pydantic import ValidationError

from stash.api import BackupConfiguration, BackupSession
from stash.api.backupsession import BackupSessionStatus, BackupTargetStatus, HostBackupStats
from stash.contract import phases as P
from stash.contract.resources import BACKUPSESSIONS
from stash.contract.sessions import (
    heartbeat_selector,
    session_labels,
)
from stash.controllers.context import ControllerContext
from stash.controllers.globalhooks import global_post_backup, global_pre_backup
from stash.controllers.liveness import ChangeClock, failed_with_snapshots, silent_hosts
from stash.controllers.sessionend import complete_session, retry_session
from stash.controllers.sessiontargets import (
    SessionInvoker,
    initiate_target,
    member_ref,
    merge_targets,
    pending_targets,
    session_invoker,
)
from stash.controllers.volumesnapshot import POLL as SNAPSHOT_POLL
from stash.controllers.volumesnapshot import is_snapshotter, snapshot_progress
from stash.kube.client import JSON, KubeError, key_of
from stash.kube.conditions import is_true, set_condition
from stash.kube.controller import DONE, ObjectHooks, Result
from stash.kube.leader import LEASES
from stash.kube.status import update_status
from stash.validation import parse_duration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Facts:
    """What one pass learned from caches and the apiserver before writing status."""

    now: dt.datetime
    skip_reason: str | None
    targets: tuple[tuple[int, BackupTargetStatus], ...]
    """Entries to place into `status.targets` by index (initiated or bare Pending)."""
    deadline: dt.datetime | None
    dead_hosts: tuple[tuple[str, str], ...] = ()
    """(hostname, error) of hosts whose executor stopped its heartbeat, or whose Job
    failed or could not start."""
    deadline_from: str = "spec.timeOut of the invoker"
    recheck: float | None = None
    """Seconds until a Job's pod that cannot start is to be looked at again."""
    snapshot_hosts: tuple[tuple[int, HostBackupStats], ...] = ()
    """(target index, host) of claims whose VolumeSnapshot is final now (driver
    VolumeSnapshotter: `controllers.volumesnapshot`)."""


def _owner_key(session: BackupSession) -> str:
    """`BackupSession/<namespace>/<name>`: how Jobs and observations name the session."""
    return f"BackupSession/{session.metadata.namespace}/{session.metadata.name}"


class BackupSessionReconciler:
    """Moves BackupSessions through their phases."""

    name = "backupsession"
    model = BackupSession

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.hooks = ObjectHooks[BackupSession](invalid=self._unreadable)
        #: When we saw each heartbeat / stuck Job last change, by session key.
        self.seen = ChangeClock()

    async def reconcile(self, session: BackupSession, obj: JSON) -> Result:
        ctx = self.ctx
        found = session_invoker(ctx, session)
        invoker = found.whole if found is not None else None
        if invoker is not None and await self._default_labels(session, invoker):
            return DONE  # the label patch brings us back
        status = session.status or BackupSessionStatus()
        if status.phase in P.FINAL_SESSION_PHASES:
            owner = _owner_key(session)
            self.seen.forget(owner)
            self.seen.forget(f"{owner} heartbeats")
            return await retry_session(ctx, session, obj, status, invoker)

        now = ctx.now()
        hooks = found.hooks if found is not None else None
        if P.session_completed(status) or is_true(status.conditions, P.BACKUP_SKIPPED):
            if await global_post_backup(ctx, session, hooks):
                return Result(requeue_after=0.01)  # complete it with the hook's condition
            await complete_session(ctx, session, obj, invoker, now)
            return DONE
        pre_pending = (
            not status.targets
            and hooks is not None
            and hooks.pre_backup is not None
            and not is_true(status.conditions, P.GLOBAL_PRE_BACKUP_HOOK)
        )
        if pre_pending and self._skip_reason(session, status, invoker) is None:
            await global_pre_backup(ctx, session, hooks)
            return Result(requeue_after=0.01)  # start the targets, or end it Failed

        facts = await self._facts(session, status, found, now)
        written = await update_status(
            ctx.kube,
            BACKUPSESSIONS,
            str(session.metadata.name),
            session.metadata.namespace,
            lambda live: self._decide(live, facts),
            current=obj,  # a stale copy conflicts, and the live one is read then
        )
        if written is not None:
            new = BackupSessionStatus.model_validate(written.get("status") or {})
            if is_true(new.conditions, P.BACKUP_SKIPPED) or P.session_completed(new):
                return Result(requeue_after=0.01)
        waits: list[float] = []
        if facts.deadline is not None:
            waits.append(max((facts.deadline - now).total_seconds() + 0.05, 0.01))
        if status.targets:
            waits.append(
                ctx.settings.executor_heartbeat_timeout / 3
            )  # look at executor heartbeats again
        if facts.recheck is not None:
            waits.append(facts.recheck)
        return Result(requeue_after=min(waits)) if waits else DONE

    async def _unreadable(self, obj: JSON, error: ValidationError) -> Result:
        log.warning("%s: unreadable, leaving it alone: %s", key_of(obj), error)
        return DONE

    # ------------------------------------------------------------------ reads
    async def _facts(
        self,
        session: BackupSession,
        status: BackupSessionStatus,
        found: SessionInvoker | None,
        now: dt.datetime,
    ) -> _Facts:
        invoker = found.whole if found is not None else None
        skip = self._skip_reason(session, status, invoker)
        targets: list[tuple[int, BackupTargetStatus]] = []
        deadline: dt.datetime | None = None
        time_out = invoker.spec.time_out if invoker is not None and invoker.spec else None
        if found is not None and invoker is not None and skip is None:
            count = len(found.members)
            start, bare = pending_targets(status.targets or [], count, found.sequential)
            ns = str(session.metadata.namespace)
            for i in bare:
                targets.append((i, BackupTargetStatus(ref=member_ref(found.members[i], ns))))
            for i in start:
                entry = await initiate_target(self.ctx, session, found.members[i], i, count)
                targets.append((i, entry))
            deadline = self._deadline(session, status, time_out, now)
        dead: tuple[tuple[str, str], ...] = ()
        recheck = None
        snapshots: tuple[tuple[int, HostBackupStats], ...] = ()
        if status.targets:
            jobs = await self.ctx.executor_failures(_owner_key(session), self.seen)
            dead = tuple(await self._dead_hosts(session, status, jobs.hosts))
            recheck = jobs.recheck
            if found is not None and any(is_snapshotter(m) for m in found.members):
                snapshots = await snapshot_progress(self.ctx, session, status, found.members, now)
                recheck = min(recheck or SNAPSHOT_POLL, SNAPSHOT_POLL)
        return _Facts(
            now=now,
            skip_reason=skip,
            targets=tuple(targets),
            deadline=deadline,
            dead_hosts=dead,
            deadline_from="spec.timeOut of the invoker"
            if time_out
            else "the operator's default_session_timeout; the invoker sets no spec.timeOut",
            recheck=recheck,
            snapshot_hosts=snapshots,
        )

    def _deadline(
        self,
        session: BackupSession,
        status: BackupSessionStatus,
        time_out: str | None,
        now: dt.datetime,
    ) -> dt.datetime | None:
        """As recorded, else creation + the invoker's timeOut (else the default)."""
        if status.session_deadline is not None:
            return status.session_deadline
        created = session.metadata.creation_timestamp or now
        seconds = self.ctx.settings.default_session_timeout
        if time_out:
            try:
                seconds = parse_duration(time_out)
            except ValueError:
                return None
        try:
            return created + dt.timedelta(seconds=seconds)
        except OverflowError:
            return None

    async def _dead_hosts(
        self,
        session: BackupSession,
        status: BackupSessionStatus,
        failed_jobs: list[tuple[str, str]],
    ) -> list[tuple[str, str]]:
        """Hosts whose heartbeat Lease we have seen unchanged for the heartbeat timeout
        before they reported (our clock only: `liveness.silent_hosts`), then the hosts
        of `failed_jobs`, whose errors name the snapshots their heartbeat recorded (a
        Job killed after its backup step wrote them)."""
        reported = {str(h.hostname) for t in status.targets or [] for h in t.stats or []}
        group = f"{_owner_key(session)} heartbeats"
        try:
            leases = await self.ctx.kube.list(
                LEASES,
                session.metadata.namespace,
                label_selector=heartbeat_selector(str(session.metadata.name)),
            )
        except (KubeError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            # We cannot see the heartbeats, and the executors likely cannot renew them:
            # silence is counted again from when we see them next, not through this.
            log.info("%s: heartbeats not readable (%s); their silence restarts", group, exc)
            self.seen.forget(group)
            return failed_jobs
        items = leases.get("items") or []
        timeout = self.ctx.settings.executor_heartbeat_timeout
        silent = silent_hosts(items, reported, self.seen, group, timeout)
        return silent + failed_with_snapshots(failed_jobs, items)

    def new_term(self) -> None:
        """Leadership (re)gained: forget what an earlier term saw, so the time this
        replica did not lead (the apiserver may have been down) never counts as an
        executor's silence; a new leader starts from what it sees now."""
        self.seen = ChangeClock()

    def _skip_reason(
        self,
        session: BackupSession,
        status: BackupSessionStatus,
        invoker: BackupConfiguration | None,
    ) -> str | None:
        ns = session.metadata.namespace
        ref = session.spec.invoker if session.spec else None
        if ref is None or not ref.kind or not ref.name:
            return "spec.invoker is not set: a BackupSession needs an invoker kind and name"
        if ref.kind not in ("BackupConfiguration", "BackupBatch"):
            return f"invoker kind {ref.kind} is not a backup invoker"
        where = f"{ref.kind} {ns}/{ref.name}"
        if invoker is None or invoker.metadata.deletion_timestamp:
            return f"{where} does not exist"
        if invoker.spec and invoker.spec.paused:
            return f"backup invoker {where} is paused"
        phase = invoker.status.phase if invoker.status else None
        if phase != "Ready":
            conditions = (invoker.status.conditions if invoker.status else None) or []
            why = "; ".join(f"{c.type}: {c.message}" for c in conditions if c.status != "True")
            return f"{where} is not ready (phase {phase})" + (f": {why}" if why else "")
        if not status.targets:
            for other in self.ctx.caches.backupsessions.by_index(
                "invoker", f"{ref.kind}/{ns}/{ref.name}"
            ):
                try:
                    sibling = self.ctx.parse(BackupSession, other)
                except ValidationError:
                    continue
                if sibling.metadata.name == session.metadata.name:
                    continue
                if sibling.status is not None and sibling.status.phase == "Running":
                    return f'Previous BackupSession: {sibling.metadata.name} is "Running"'
        return None

    # ------------------------------------------------------------------ writes
    def _decide(self, live: JSON, facts: _Facts) -> JSON | None:
        status = BackupSessionStatus.model_validate(live.get("status") or {})
        if status.phase in P.FINAL_SESSION_PHASES:
            return None
        conds = status.conditions
        # A session already running when its invoker becomes unready is left to finish.
        if facts.skip_reason and not status.targets:
            conds = set_condition(
                conds, P.BACKUP_SKIPPED, True, "SkippedTakingNewBackup", facts.skip_reason
            )
        if facts.targets:
            status.targets = merge_targets(status.targets or [], list(facts.targets))
        for host, error in facts.dead_hosts:
            for t in status.targets or []:
                if any(h.hostname == host for h in t.stats or []):
                    break
                if len(t.stats or []) < (t.total_hosts or 0):
                    t.stats = [
                        *(t.stats or []),
                        HostBackupStats(hostname=host, phase="Failed", error=error),
                    ]
                    break
        for index, snapped in facts.snapshot_hosts:
            t = (status.targets or [])[index]
            if not any(h.hostname == snapped.hostname for h in t.stats or []):
                t.stats = [*(t.stats or []), snapped]
        if facts.deadline is not None:
            status.session_deadline = facts.deadline
            if facts.now >= facts.deadline and not is_true(conds, P.DEADLINE_EXCEEDED):
                conds = set_condition(
                    conds,
                    P.DEADLINE_EXCEEDED,
                    True,
                    "FailedToCompleteWithinDeadline",
                    f"the session did not complete by its deadline "
                    f"{facts.deadline.isoformat()} ({facts.deadline_from})",
                )
        status.conditions = conds
        for t in status.targets or []:
            t.phase = P.target_phase(t)
        status.phase = P.backup_session_phase(status)
        return status.to_wire()

    async def _default_labels(self, session: BackupSession, invoker: BackupConfiguration) -> bool:
        """Fill in invoker/target labels missing on a hand-made session (§5.3 quirk)."""
        ns = str(session.metadata.namespace)
        have = session.metadata.labels or {}
        ref = invoker.spec.target.ref if invoker.spec and invoker.spec.target else None
        want = session_labels(
            invoker.kind, str(invoker.metadata.name), None, ref.to_wire() if ref else None, ns
        )
        missing = {k: v for k, v in want.items() if k not in have}
        if not missing:
            return False
        await self.ctx.kube.patch(
            BACKUPSESSIONS, str(session.metadata.name), {"metadata": {"labels": missing}}, ns
        )
        return True
