"""RestoreBatch reconciler (stash-api.md §1.6, §5.6 per member). One-shot.

Checks the shared Repository, its Secret and validation (global hooks are refused until
they run; members' hooks are run by their agents); then, member by member — all at once
(Parallel) or each once the previous one is final (Sequential) — checks the target (or
its volumeClaimTemplates), provisions the executor (the restore Job(s), or the RBAC of
the `stash-init` init-container the workload reconciler injects) and writes the member's
entry in `status.members` (`ref`, `totalHosts`, `RestoreTargetFound`,
`RestoreExecutorEnsured`). The agents write the members' host stats. When every member
is final, or the deadline from `timeOut` passed, the metrics push is recorded, which
makes the phase final (`phases.restore_batch_phase`), and a Event names what failed,
member by member.

Facts first (`_facts`), a pure decision (`_decide`), then the side effects (the
executors, the status computed from the live object, never touching host stats).
Not for: running restores or hooks (`stash.agent`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from stash.api import RestoreBatch, RestoreSession
from stash.api.batch import RestoreBatchStatus, RestoreMemberStatus
from stash.api.common import Condition, TargetRef
from stash.api.restoresession import HostRestoreStats
from stash.contract import phases as P
from stash.contract.batches import claim_names, may_start, restore_members
from stash.contract.resources import RESTOREBATCHES
from stash.contract.restorerules import job_host_of
from stash.contract.sessions import (
    INVOKER_FINALIZER,
    format_duration,
    hosts_observed,
    total_hosts,
)
from stash.controllers.access import grant_repository_access, revoke_repository_access
from stash.controllers.conditions import (
    Check,
    RepositoryFacts,
    TargetFacts,
    apply_checks,
    repository_checks,
    target_check,
    unparsable,
)
from stash.controllers.context import ControllerContext
from stash.controllers.liveness import ChangeClock
from stash.controllers.notify import restore_session_ended
from stash.controllers.provisioning import (
    ensure_binding,
    ensure_restore_executor,
    is_job_model,
    workload_service_account,
)
from stash.kube.client import JSON
from stash.kube.conditions import is_true, set_condition
from stash.kube.controller import DONE, ObjectHooks, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.status import update_status
from stash.validation import ValidationFacts, parse_duration, validate_restore_batch

__all__ = ["RestoreBatchReconciler"]

log = logging.getLogger(__name__)
RECHECK = 5.0


@dataclass(frozen=True)
class _Facts:
    repository: RepositoryFacts | None
    targets: tuple[TargetFacts | None, ...]
    namespace_labels: dict[str, str] | None


@dataclass(frozen=True)
class _Member:
    """What one pass decided for a member: its checks, and its hosts when it may start."""

    ref: TargetRef
    checks: list[Check]
    hosts: int | None
    start: bool


@dataclass(frozen=True)
class _Decision:
    checks: list[Check]
    members: list[_Member]
    recheck: bool


def _member_ref(view: RestoreSession) -> TargetRef:
    target = view.spec.target if view.spec else None
    if target is not None and target.ref is not None:
        return target.ref.model_copy(
            update={"namespace": target.ref.namespace or view.metadata.namespace}
        )
    claims = claim_names(target)
    return TargetRef(
        api_version="v1", kind="PersistentVolumeClaim", name=claims[0] if claims else None
    )


def _decide(batch: RestoreBatch, status: RestoreBatchStatus, facts: _Facts) -> _Decision:
    """Top-level checks; per member its target check, hosts and whether it starts (pure)."""
    checks: list[Check] = []
    if facts.repository is not None:
        checks.extend(repository_checks(facts.repository))
    repo = facts.repository.repository if facts.repository else None
    verdict = validate_restore_batch(batch, None, ValidationFacts(repo, facts.namespace_labels))
    if verdict.ok:
        checks.append(
            Check(
                P.VALIDATION_PASSED, True, "ResourceValidationPassed", "all validation rules passed"
            )
        )
    else:
        checks.append(
            Check(P.VALIDATION_PASSED, False, "ResourceValidationFailed", verdict.message)
        )
    ready = verdict.ok and not any(c.status is not True for c in checks)
    existing = status.members or []
    final = [
        i < len(existing) and P.restore_member_phase(existing[i]) in P.FINAL_RESTORE_PHASES
        for i in range(len(facts.targets))
    ]
    sequential = bool(batch.spec and batch.spec.execution_order == "Sequential")
    allowed = may_start(sequential, final)
    members: list[_Member] = []
    recheck = not ready
    for i, (view, target) in enumerate(zip(restore_members(batch), facts.targets, strict=True)):
        started = i < len(existing) and existing[i].total_hosts is not None
        spec_target = view.spec.target if view.spec else None
        hosts: int | None = None
        mine: list[Check] = []
        if target is not None:
            mine.append(target_check(P.RESTORE_TARGET_FOUND, target))
            if not target.found or not hosts_observed(target.kind, target.workload):
                recheck = True
            else:
                hosts = total_hosts(target.kind, target.workload)
        elif spec_target is not None and spec_target.volume_claim_templates:
            mine.append(
                Check(
                    P.RESTORE_TARGET_FOUND,
                    True,
                    "TargetAvailable",
                    "the target is created from volumeClaimTemplates",
                )
            )
            hosts = int(spec_target.replicas or 1)
        else:
            mine.append(
                Check(
                    P.RESTORE_TARGET_FOUND,
                    False,
                    "TargetNotAvailable",
                    "target needs a ref or volumeClaimTemplates",
                )
            )
        start = ready and allowed[i] and not started and hosts is not None
        members.append(_Member(_member_ref(view), mine, hosts, start))
    return _Decision(checks, members, recheck)


def _member_failures(
    views: list[RestoreSession], failed: list[tuple[str, str]]
) -> list[tuple[int, str, str]]:
    """(member index, host, error) for each failed Job's host. A member's hosts are the
    ones `job_host` names from its alias; aliases are unique within a batch (validation),
    so a host names one member."""
    out = []
    for host, error in failed:
        for i, view in enumerate(views):
            target = view.spec.target if view.spec else None
            alias = target.alias if target else None
            if alias and job_host_of(alias, host):
                out.append((i, host, error))
                break
    return out


def _fail_hosts(members: list[RestoreMemberStatus], failed: list[tuple[int, str, str]]) -> None:
    """Record each (member, host, error) Failed (in place) unless its agent reported or
    the member already has all its hosts."""
    for i, host, error in failed:
        if i >= len(members):
            continue
        m = members[i]
        stats = list(m.stats or [])
        if any(s.hostname == host for s in stats) or len(stats) >= (m.total_hosts or 0):
            continue
        m.stats = [*stats, HostRestoreStats(hostname=host, phase="Failed", error=error)]


def _merge(old: list[Condition] | None, new: list[Condition]) -> list[Condition]:
    out = list(old or [])
    for c in new:
        out = set_condition(out, c.type, c.status, c.reason or "", c.message or "")
    return out


class RestoreBatchReconciler:
    """Moves RestoreBatches through their phases."""

    name = "restorebatch"
    model = RestoreBatch

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.hooks = ObjectHooks[RestoreBatch](
            finalizer=INVOKER_FINALIZER, finalize=self._finalize, invalid=self._invalid
        )
        #: Since when we saw each member's restore Job unable to start, by batch key.
        self.seen = ChangeClock()

    async def _facts(self, batch: RestoreBatch) -> _Facts:
        ctx = self.ctx
        ns = str(batch.metadata.namespace)
        spec = batch.spec
        repository = None
        if spec is not None and (spec.driver or "Restic") == "Restic":
            repository = ctx.repository_facts(spec.repository, ns)
        targets: list[TargetFacts | None] = []
        for member in (spec.members or []) if spec else []:
            ref = member.target.ref if member.target else None
            targets.append(
                await ctx.target_facts(ref, ns) if ref and ref.kind and ref.name else None
            )
        return _Facts(repository, tuple(targets), ctx.namespace_labels(ns))

    async def reconcile(self, batch: RestoreBatch, obj: JSON) -> Result:
        status = batch.status or RestoreBatchStatus()
        if status.phase in P.FINAL_RESTORE_PHASES:
            return DONE
        now = self.ctx.now()
        if P.restore_batch_completed(status):
            await self._complete(obj, batch.metadata.creation_timestamp or now, now)
            return DONE
        decision = _decide(batch, status, await self._facts(batch))
        views = restore_members(batch)
        entries: dict[int, RestoreMemberStatus] = {}
        for i, member in enumerate(decision.members):
            conds = apply_checks(None, member.checks)
            hosts = None
            if member.start:
                ok, message, hosts = await self._provision(views[i], i, member.hosts)
                conds = set_condition(
                    conds,
                    P.RESTORE_EXECUTOR_ENSURED,
                    ok,
                    "SuccessfullyEnsuredRestoreExecutor" if ok else "FailedToEnsureRestoreExecutor",
                    message,
                )
                hosts = hosts if ok else None
            entries[i] = RestoreMemberStatus(ref=member.ref, conditions=conds, total_hosts=hosts)
        top = apply_checks(None, decision.checks)
        deadline = self._deadline(batch, status)
        key = f"RestoreBatch/{batch.metadata.namespace}/{batch.metadata.name}"
        jobs = await self.ctx.executor_failures(key, self.seen)

        failed = _member_failures(views, jobs.hosts)
        await self._write(obj, lambda st: self._update(st, top, entries, deadline, now, failed))
        requeue = RECHECK if decision.recheck else None
        for wait in (
            max((deadline - now).total_seconds(), 0.01) if deadline is not None else None,
            jobs.recheck,
        ):
            if wait is not None:
                requeue = min(requeue, wait) if requeue is not None else wait
        return Result(requeue)

    async def _provision(
        self, view: RestoreSession, index: int, hosts: int | None
    ) -> tuple[bool, str, int | None]:
        """RestoreExecutorEnsured for member `index`: its Job(s), or the init-container's RBAC."""
        ns = str(view.metadata.namespace)
        target = view.spec.target if view.spec else None
        if is_job_model(view):
            ok, message, job_hosts = await ensure_restore_executor(self.ctx, view, index)
            return ok, message, job_hosts if target and target.volume_claim_templates else hosts
        ref = (target.ref if target else None) or TargetRef()
        sa = await workload_service_account(self.ctx, ref, ns)
        await ensure_binding(self.ctx, ns, sa, "stash-restore-init-container")
        problem = await grant_repository_access(self.ctx, view, sa)
        if problem:
            return False, problem, hosts
        return (
            True,
            f"the stash-init init-container of {ref.kind} {ns}/{ref.name} restores this member",
            hosts,
        )

    @staticmethod
    def _deadline(batch: RestoreBatch, status: RestoreBatchStatus) -> dt.datetime | None:
        if status.session_deadline is not None:
            return status.session_deadline
        created = batch.metadata.creation_timestamp
        if created is None or not batch.spec or not batch.spec.time_out:
            return None
        try:
            return created + dt.timedelta(seconds=parse_duration(batch.spec.time_out))
        except ValueError:
            return None

    @staticmethod
    def _update(
        st: RestoreBatchStatus,
        top: list[Condition],
        entries: dict[int, RestoreMemberStatus],
        deadline: dt.datetime | None,
        now: dt.datetime,
        failed: list[tuple[int, str, str]],
    ) -> RestoreBatchStatus:
        """The live status with this pass's decisions; host stats the agents wrote are
        left as they are, and a host whose restore Job failed (or could not start) is
        recorded Failed with the reason when its agent never reported."""
        st.conditions = _merge(st.conditions, top)
        members = list(st.members or [])
        for i in sorted(entries):
            new = entries[i]
            if i >= len(members):
                members.append(new)
                continue
            old = members[i]
            old.ref = new.ref
            old.conditions = _merge(old.conditions, new.conditions or [])
            if old.total_hosts is None:
                old.total_hosts = new.total_hosts
        _fail_hosts(members, failed)
        for m in members:
            m.phase = P.restore_member_phase(m)
        st.members = members
        if deadline is not None:
            st.session_deadline = deadline
            if now >= deadline and not is_true(st.conditions, P.DEADLINE_EXCEEDED):
                st.conditions = set_condition(
                    st.conditions,
                    P.DEADLINE_EXCEEDED,
                    True,
                    "FailedToCompleteWithinDeadline",
                    f"the restore did not complete by its deadline {deadline.isoformat()}",
                )
        st.phase = P.restore_batch_phase(st)
        return st

    async def _finalize(self, obj: JSON, batch: RestoreBatch | None) -> None:
        await revoke_repository_access(self.ctx, obj)

    async def _invalid(self, obj: JSON, error: ValidationError) -> Result:
        def mark(st: RestoreBatchStatus) -> RestoreBatchStatus:
            st.conditions = unparsable(st.conditions, error)
            st.phase = P.restore_batch_phase(st)
            return st

        await self._write(obj, mark)
        return DONE

    async def _complete(self, obj: JSON, created: dt.datetime, now: dt.datetime) -> None:
        def finish(st: RestoreBatchStatus) -> RestoreBatchStatus:
            st.conditions = set_condition(
                st.conditions,
                P.METRICS_PUSHED,
                True,
                "SuccessfullyPushedMetrics",
                "no Pushgateway configured; nothing to push",
            )
            st.session_duration = format_duration((now - created).total_seconds())
            for m in st.members or []:
                m.phase = P.restore_member_phase(m)
            st.phase = P.restore_batch_phase(st)
            return st

        written = await self._write(obj, finish)
        if written is None:
            return
        done = RestoreBatchStatus.model_validate(written.get("status") or {})
        errors = [
            f"member {i} ({m.ref.kind} {m.ref.name}): host {s.hostname}: {s.error}"
            for i, m in enumerate(done.members or [])
            for s in m.stats or []
            if s.phase != "Succeeded"
        ]
        if is_true(done.conditions, P.DEADLINE_EXCEEDED):
            errors.append("the deadline passed before every member finished")
        summary = f"{done.phase}" + (": " + "; ".join(errors) if errors else "")
        await self.ctx.recorder.emit(
            written,
            NORMAL if done.phase == "Succeeded" else WARNING,
            f"RestoreBatch{done.phase}",
            summary,
        )
        restore_session_ended(self.ctx, written, summary)

    async def _write(
        self, obj: JSON, change: Callable[[RestoreBatchStatus], RestoreBatchStatus]
    ) -> JSON | None:
        """Write `change(live status)`, unless the live phase is final already."""
        meta = obj["metadata"]

        def compute(live: JSON) -> JSON | None:
            st = RestoreBatchStatus.model_validate(live.get("status") or {})
            if st.phase in P.FINAL_RESTORE_PHASES:
                return None
            return change(st).to_wire()

        return await update_status(
            self.ctx.kube, RESTOREBATCHES, meta["name"], meta["namespace"], compute
        )
