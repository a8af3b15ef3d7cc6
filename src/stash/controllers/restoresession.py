"""RestoreSession reconciler (stash-api.md §5.6, phases §1.5). One-shot.

Checks the Repository, its Secret, validation and the target; writes `totalHosts`
once the target is found (StatefulSet replicas, `volumeClaimTemplates` replicas, else
1); sets the deadline from `timeOut` (else the operator's `default_session_timeout`);
fails the host of a restore Job that failed or whose pod could not start
(`liveness`); completes when every host reported (the agents write `status.stats`) or
the deadline passed, recording the metrics push, which makes the
phase final. Final phases are never re-processed. Each pass gathers its facts
(`ControllerContext.invoker_facts`), decides the conditions purely (`_decide`), then
provisions the executor (`provisioning`) and writes the status computed from the live
object. Not for: running restores.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from stash.api import RestoreSession
from stash.api.common import Condition, TargetRef
from stash.api.restoresession import HostRestoreStats, RestoreSessionStatus
from stash.contract import phases as P
from stash.contract.resources import RESTORESESSIONS
from stash.contract.sessions import (
    INVOKER_FINALIZER,
    format_duration,
    hosts_observed,
    total_hosts,
)
from stash.controllers.access import grant_repository_access, revoke_repository_access
from stash.controllers.conditions import (
    Check,
    InvokerFacts,
    apply_checks,
    repository_checks,
    target_check,
    unparsable,
    usage_check,
)
from stash.controllers.context import ControllerContext
from stash.controllers.liveness import ChangeClock
from stash.controllers.metricspush import PROJECTED, MetricsRecord, restore_session_metrics
from stash.controllers.notify import restore_session_ended
from stash.controllers.provisioning import (
    ensure_binding,
    ensure_restore_executor,
    is_job_model,
    workload_service_account,
)
from stash.controllers.volumesnapshot import POLL as SNAPSHOT_POLL
from stash.controllers.volumesnapshot import is_snapshotter, restore_from_snapshots
from stash.kube.client import JSON
from stash.kube.conditions import is_true, set_condition
from stash.kube.controller import DONE, ObjectHooks, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.status import update_status
from stash.validation import parse_duration, validate_restore_session

log = logging.getLogger(__name__)
RECHECK = 5.0


@dataclass(frozen=True)
class _Decision:
    checks: list[Check]
    hosts: int | None
    """How many hosts restore (None: the target is not known yet)."""
    ready: bool
    """Everything is found and valid: the executor may be provisioned."""
    recheck: bool
    """Something is missing that no watch reports: look again in RECHECK s."""


def _decide(rs: RestoreSession, facts: InvokerFacts) -> _Decision:
    """The conditions before provisioning, the host count and whether to go on (pure)."""
    checks: list[Check] = []
    if facts.repository is not None:
        checks.extend(repository_checks(facts.repository))
    usage = usage_check(facts, str(rs.metadata.namespace))
    if usage is not None:
        checks.append(usage)
    recheck = any(c.status is not True for c in checks)
    verdict = validate_restore_session(rs, None, facts.validation())
    if verdict.ok:
        valid = Check(
            P.VALIDATION_PASSED, True, "ResourceValidationPassed", "all validation rules passed"
        )
    else:
        valid = Check(P.VALIDATION_PASSED, False, "ResourceValidationFailed", verdict.message)
    checks.append(valid)
    target = rs.spec.target if rs.spec else None
    hosts: int | None = None
    # VolumeSnapshotter: the claims come first, the workload that mounts them may follow
    snapshotter = rs.spec is not None and rs.spec.driver == "VolumeSnapshotter"
    if facts.target is not None and not (snapshotter and target and target.volume_claim_templates):
        checks.append(target_check(P.RESTORE_TARGET_FOUND, facts.target))
        if not facts.target.found:
            recheck = True
        elif hosts_observed(facts.target.kind, facts.target.workload):
            hosts = total_hosts(facts.target.kind, facts.target.workload)
        else:
            recheck = True  # a new DaemonSet: its controller has not counted its pods
    elif target is not None and target.volume_claim_templates:
        message = "the target is created from spec.target.volumeClaimTemplates"
        checks.append(Check(P.RESTORE_TARGET_FOUND, True, "TargetAvailable", message))
        hosts = int(target.replicas or 1)
    else:
        message = "spec.target needs a ref or volumeClaimTemplates"
        checks.append(Check(P.RESTORE_TARGET_FOUND, False, "TargetNotAvailable", message))
    ready = hosts is not None and verdict.ok and not any(c.status is False for c in checks)
    return _Decision(checks, hosts, ready, recheck)


def _deadline(
    rs: RestoreSession, status: RestoreSessionStatus, default: float
) -> dt.datetime | None:
    """When the restore must be done: as recorded, else creation + spec.timeOut (else
    creation + `default` seconds)."""
    if status.session_deadline is not None:
        return status.session_deadline
    created = rs.metadata.creation_timestamp
    if created is None:
        return None
    try:
        seconds = parse_duration(rs.spec.time_out) if rs.spec and rs.spec.time_out else default
        return created + dt.timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        return None


def _fail_hosts(st: RestoreSessionStatus, failed: list[tuple[str, str]]) -> None:
    """Record (host, error) as Failed for hosts that have not reported (in place)."""
    for host, error in failed:
        stats = list(st.stats or [])
        if any(s.hostname == host for s in stats) or len(stats) >= (st.total_hosts or 0):
            continue
        st.stats = [*stats, HostRestoreStats(hostname=host, phase="Failed", error=error)]


class RestoreSessionReconciler:
    """Moves RestoreSessions through their phases."""

    name = "restoresession"
    model = RestoreSession

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.hooks = ObjectHooks[RestoreSession](
            finalizer=INVOKER_FINALIZER, finalize=self._finalize, invalid=self._invalid
        )
        #: Since when we saw each restore Job unable to start, by session key.
        self.seen = ChangeClock()

    async def reconcile(self, rs: RestoreSession, obj: JSON) -> Result:
        status = rs.status or RestoreSessionStatus()
        key = f"RestoreSession/{rs.metadata.namespace}/{rs.metadata.name}"
        if status.phase in P.FINAL_RESTORE_PHASES:
            self.seen.forget(key)
            return DONE
        now = self.ctx.now()
        if P.restore_completed(status) or is_true(status.conditions, P.DEADLINE_EXCEEDED):
            await self._complete(obj, rs.metadata.creation_timestamp or now, now)
            return DONE
        decision = _decide(rs, await self.ctx.invoker_facts(rs))
        conds = apply_checks(None, decision.checks)
        hosts = decision.hosts
        restored: list[HostRestoreStats] = []
        deadline = _deadline(rs, status, self.ctx.settings.default_session_timeout)
        if decision.ready and is_snapshotter(rs):
            overdue = deadline is not None and now >= deadline
            conds, hosts, restored = await self._restore_claims(rs, conds, overdue)
        elif decision.ready:
            conds, hosts = await self._provision(rs, conds, hosts)
        else:
            hosts = None
        jobs = await self.ctx.executor_failures(key, self.seen)

        def decide(st: RestoreSessionStatus) -> RestoreSessionStatus:
            c = _merge(st.conditions, conds)
            if deadline is not None:
                st.session_deadline = deadline
                if now >= deadline and not is_true(c, P.DEADLINE_EXCEEDED):
                    c = set_condition(
                        c,
                        P.DEADLINE_EXCEEDED,
                        True,
                        "FailedToCompleteWithinDeadline",
                        f"the restore did not complete by its deadline {deadline.isoformat()}",
                    )
            if hosts is not None and st.total_hosts is None:
                st.total_hosts = hosts
            _fail_hosts(st, jobs.hosts)
            known = {s.hostname for s in st.stats or []}
            st.stats = [*(st.stats or []), *(h for h in restored if h.hostname not in known)]
            st.conditions = c
            st.phase = P.restore_session_phase(st)  # type: ignore[assignment]
            return st

        await self._write(obj, decide)
        requeue = RECHECK if decision.recheck else None
        if decision.ready and is_snapshotter(rs):
            requeue = SNAPSHOT_POLL  # claims binding are not watched
        for wait in (
            max((deadline - now).total_seconds(), 0.01) if deadline is not None else None,
            jobs.recheck,
        ):
            if wait is not None:
                requeue = min(requeue, wait) if requeue is not None else wait
        return Result(requeue)

    async def _provision(
        self, rs: RestoreSession, conds: list[Condition], hosts: int | None
    ) -> tuple[list[Condition], int | None]:
        """RestoreExecutorEnsured: the Jobs, or the init-container's RBAC (side effects)."""
        ns = str(rs.metadata.namespace)
        target = rs.spec.target if rs.spec else None
        if is_job_model(rs):
            ok, message, job_hosts = await ensure_restore_executor(self.ctx, rs)
            hosts = job_hosts if target and target.volume_claim_templates else hosts
        else:
            ref = (target.ref if target else None) or TargetRef()
            sa = await workload_service_account(self.ctx, ref, ns)
            await ensure_binding(self.ctx, ns, sa, "stash-restore-init-container")
            problem = await grant_repository_access(self.ctx, rs, sa)
            ok = problem is None
            message = problem or (
                f"the stash-init init-container of {ref.kind} {ns}/{ref.name} runs this restore"
            )
        conds = set_condition(
            conds,
            P.RESTORE_EXECUTOR_ENSURED,
            ok,
            "SuccessfullyEnsuredRestoreExecutor" if ok else "FailedToEnsureRestoreExecutor",
            message,
        )
        return conds, hosts if ok else None

    async def _restore_claims(
        self, rs: RestoreSession, conds: list[Condition], overdue: bool
    ) -> tuple[list[Condition], int | None, list[HostRestoreStats]]:
        """RestoreExecutorEnsured for driver VolumeSnapshotter: the claims are created
        from their snapshots by the operator; their hosts that are final now (`overdue`:
        the deadline passed, an unbound claim is final too)."""
        ok, message, hosts, stats = await restore_from_snapshots(self.ctx, rs, overdue)
        conds = set_condition(
            conds,
            P.RESTORE_EXECUTOR_ENSURED,
            ok,
            "SuccessfullyEnsuredRestoreExecutor" if ok else "FailedToEnsureRestoreExecutor",
            message,
        )
        return conds, hosts if ok else None, stats

    async def _finalize(self, obj: JSON, rs: RestoreSession | None) -> None:
        await revoke_repository_access(self.ctx, obj)

    async def _invalid(self, obj: JSON, error: ValidationError) -> Result:
        status = RestoreSessionStatus.model_validate(obj.get("status") or {})
        conds = unparsable(status.conditions, error)
        await self._write(obj, lambda st: _with(st, conds))
        return DONE

    async def _complete(self, obj: JSON, created: dt.datetime, now: dt.datetime) -> None:
        def finish(st: RestoreSessionStatus, pushed: MetricsRecord) -> RestoreSessionStatus:
            st.conditions = set_condition(
                st.conditions, P.METRICS_PUSHED, pushed.status, pushed.reason, pushed.message
            )
            st.conditions = set_condition(
                st.conditions,
                P.RESTORE_COMPLETED,
                True,
                "PostRestoreTasksExecuted",
                "every host reported"
                if not is_true(st.conditions, P.DEADLINE_EXCEEDED)
                else "the deadline passed",
            )
            st.session_duration = format_duration((now - created).total_seconds())
            st.phase = P.restore_session_phase(st)  # type: ignore[assignment]
            return st

        # The phase does not depend on the push: publish what the restore ends as.
        status = RestoreSessionStatus.model_validate(obj.get("status") or {})
        ending = finish(status, PROJECTED)
        rs = self.ctx.parse(RestoreSession, obj)
        pushed = await restore_session_metrics(self.ctx, rs, ending, now)
        written = await self._write(obj, lambda st: finish(st, pushed))
        if written is not None:
            done = RestoreSessionStatus.model_validate(written.get("status") or {})
            phase = done.phase
            errors = [
                f"host {s.hostname}: {s.error}" for s in done.stats or [] if s.phase != "Succeeded"
            ]
            summary = f"{phase}" + (": " + "; ".join(errors) if errors else "")
            await self.ctx.recorder.emit(
                written,
                NORMAL if phase == "Succeeded" else WARNING,
                f"RestoreSession{phase}",
                summary,
            )
            restore_session_ended(self.ctx, written, summary)

    async def _write(
        self, obj: JSON, change: Callable[[RestoreSessionStatus], RestoreSessionStatus]
    ) -> JSON | None:
        """Write `change(live status)`, unless the live phase is final already."""
        meta = obj["metadata"]

        def compute(live: JSON) -> JSON | None:
            st = RestoreSessionStatus.model_validate(live.get("status") or {})
            if st.phase in P.FINAL_RESTORE_PHASES:
                return None
            return change(st).to_wire()

        return await update_status(
            self.ctx.kube, RESTORESESSIONS, meta["name"], meta["namespace"], compute
        )


def _merge(old: list[Condition] | None, new: list[Condition]) -> list[Condition]:
    out = list(old or [])
    for c in new:
        out = set_condition(
            out,
            c.type,
            c.status,
            c.reason or "",
            c.message or "",
            observed_generation=c.observed_generation,
        )
    return out


def _with(st: RestoreSessionStatus, conds: list[Condition]) -> RestoreSessionStatus:
    st.conditions = _merge(st.conditions, conds)
    st.phase = P.restore_session_phase(st)  # type: ignore[assignment]
    return st
