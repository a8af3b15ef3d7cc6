"""BackupBatch reconciler (stash-api.md §1.6, §5.1 for a batch).

Each pass: finalizer; conditions RepositoryFound, BackendSecretFound (the one shared
Repository), ValidationPassed (`validate_backup_batch`, and a schedule the cron engine
can run) and ScheduleRegistered; per member, in
`status.memberConditions`, BackupTargetFound and (sidecar members) StashSidecarInjected;
the phase from `phases.backup_invoker_phase`, NotReady while a member's target is
missing or its sidecar cannot run. The schedule is registered with the cron engine like
a BackupConfiguration's (`BackupBatch/<ns>/<name>`), so ticks create BackupSessions of
the batch. Facts first (`_facts`), a pure decision (`_decide`), then the side effects.

Global hooks are run per session by the BackupSession reconciler (`globalhooks`).

Not for: running the members (`backupsession`, `sessiontargets`, the agents).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from stash.api import BackupBatch, BackupConfiguration
from stash.api.batch import MemberConditions
from stash.api.common import Condition, TargetRef
from stash.contract import phases as P
from stash.contract.batches import backup_members
from stash.contract.resources import BACKUPBATCHES
from stash.contract.sessions import INVOKER_FINALIZER
from stash.controllers.access import revoke_repository_access
from stash.controllers.backupconfiguration import engine_key, invalid_status, sidecar_check
from stash.controllers.conditions import (
    Check,
    RepositoryFacts,
    TargetFacts,
    apply_checks,
    repository_checks,
    target_check,
)
from stash.controllers.context import ControllerContext
from stash.controllers.nextrun import earliest, next_run, without_unset
from stash.cron import CronError, CronSchedule, parse_schedule
from stash.kube.client import JSON, key_of
from stash.kube.controller import DONE, ObjectHooks, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.status import update_status
from stash.validation import ValidationFacts, validate_backup_batch

__all__ = ["BackupBatchReconciler"]

log = logging.getLogger(__name__)
TARGET_RECHECK = 15.0


@dataclass(frozen=True)
class _Facts:
    repository: RepositoryFacts | None
    targets: tuple[TargetFacts | None, ...]
    namespace_labels: dict[str, str] | None


@dataclass(frozen=True)
class _Decision:
    conditions: list[Condition]
    members: list[MemberConditions]
    schedule: CronSchedule | None
    phase: str
    recheck: bool


def _validation(
    batch: BackupBatch, facts: _Facts, default_tz: str
) -> tuple[Check, CronSchedule | None]:
    repo = facts.repository.repository if facts.repository else None
    verdict = validate_backup_batch(batch, None, ValidationFacts(repo, facts.namespace_labels))
    problems = [str(v) for v in verdict.violations]
    schedule = None
    text = batch.spec.schedule if batch.spec else None
    if text:
        try:
            schedule = parse_schedule(text, default_tz)
        except CronError as exc:
            if not any("schedule" in p for p in problems):
                problems.append(f"spec.schedule: {exc}")
    else:
        problems.append("spec.schedule: required (a cron expression such as */30 * * * *)")
    if problems:
        return Check(
            P.VALIDATION_PASSED, False, "ResourceValidationFailed", "; ".join(problems)
        ), None
    return Check(
        P.VALIDATION_PASSED, True, "ResourceValidationPassed", "all validation rules passed"
    ), schedule


def _member_checks(member: BackupConfiguration, target: TargetFacts | None) -> list[Check]:
    if target is None:
        return []
    checks = [target_check(P.BACKUP_TARGET_FOUND, target)]
    injected = sidecar_check(member, target)
    if injected is not None:
        checks.append(injected)
    return checks


def _decide(batch: BackupBatch, facts: _Facts, default_tz: str) -> _Decision:
    """Conditions, member conditions, schedule and phase of one pass (pure)."""
    checks: list[Check] = []
    if facts.repository is not None:
        checks.extend(repository_checks(facts.repository))
    valid, schedule = _validation(batch, facts, default_tz)
    checks.append(valid)
    if schedule is not None:
        paused = " (paused: no sessions are created)" if batch.spec and batch.spec.paused else ""
        checks.append(
            Check(
                P.SCHEDULE_REGISTERED,
                True,
                "ScheduleRegistrationSucceeded",
                f'schedule "{schedule}" registered{paused}',
            )
        )
    else:
        message = "no schedule is registered while the BackupBatch is invalid"
        checks.append(Check(P.SCHEDULE_REGISTERED, False, "ScheduleRegistrationFailed", message))
    generation = batch.metadata.generation
    status = batch.status
    conditions = apply_checks(
        status.conditions if status else None, checks, observed_generation=generation
    )
    old = {i: m for i, m in enumerate((status.member_conditions if status else None) or [])}
    members: list[MemberConditions] = []
    blocked = False
    recheck = False
    for i, (member, target) in enumerate(zip(backup_members(batch), facts.targets, strict=True)):
        mine = apply_checks(
            old[i].conditions if i in old else None,
            _member_checks(member, target),
            observed_generation=generation,
        )
        ref = member.spec.target.ref if member.spec and member.spec.target else None
        members.append(MemberConditions(target=ref or TargetRef(), conditions=mine or None))
        blocked = blocked or any(c.status != "True" for c in mine)
        recheck = recheck or (target is not None and target.found is not True)
    phase = P.backup_invoker_phase(conditions, batch.spec.driver if batch.spec else None)
    if phase == "Ready" and blocked:
        phase = "NotReady"
    return _Decision(conditions, members, schedule, phase, recheck)


class BackupBatchReconciler:
    """Keeps a BackupBatch's conditions, member conditions, phase and schedule in step."""

    name = "backupbatch"
    model = BackupBatch

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.hooks = ObjectHooks[BackupBatch](
            finalizer=INVOKER_FINALIZER,
            gone=self._unregister,
            finalize=self._finalize,
            invalid=self._invalid,
        )

    async def _facts(self, batch: BackupBatch) -> _Facts:
        ctx = self.ctx
        ns = str(batch.metadata.namespace)
        spec = batch.spec
        repository = None
        if spec is not None and (spec.driver or "Restic") == "Restic":
            repository = ctx.repository_facts(spec.repository, ns)
        targets: list[TargetFacts | None] = []
        for member in spec.members or [] if spec else []:
            ref = member.target.ref if member.target else None
            found = await ctx.target_facts(ref, ns) if ref and ref.kind and ref.name else None
            targets.append(found)
        return _Facts(repository, tuple(targets), ctx.namespace_labels(ns))

    async def reconcile(self, batch: BackupBatch, obj: JSON) -> Result:
        ctx = self.ctx
        decision = _decide(batch, await self._facts(batch), ctx.settings.default_timezone)
        ekey = engine_key("BackupBatch", key_of(obj))
        if decision.schedule is not None:
            paused = bool(batch.spec and batch.spec.paused)
            ctx.engine.register(ekey, decision.schedule, paused, batch.metadata.creation_timestamp)
        else:
            ctx.engine.unregister(ekey)
        status = {
            "observedGeneration": batch.metadata.generation,
            "phase": decision.phase,
            "conditions": [c.to_wire() for c in decision.conditions],
            "memberConditions": [m.to_wire() for m in decision.members],
        }
        upcoming = next_run(ctx.engine, ekey)
        status["nextBackupTime"] = upcoming.wire
        await self._write(obj, status, batch)
        return Result(
            earliest(TARGET_RECHECK if decision.recheck else None, upcoming.recheck_after)
        )

    async def _unregister(self, key: str) -> None:
        self.ctx.engine.unregister(engine_key("BackupBatch", key))

    async def _finalize(self, obj: JSON, batch: BackupBatch | None) -> None:
        await self._unregister(key_of(obj))
        await revoke_repository_access(self.ctx, obj)

    async def _invalid(self, obj: JSON, error: ValidationError) -> Result:
        """Phase Invalid with the parse error (as ValidationPassed); no schedule."""
        await self._write(obj, invalid_status(obj, error), None)
        await self._unregister(key_of(obj))
        return DONE

    async def _write(self, obj: JSON, status: JSON, batch: BackupBatch | None) -> None:
        old = obj.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()) and batch is not None:
            return
        meta = obj["metadata"]
        await update_status(
            self.ctx.kube,
            BACKUPBATCHES,
            meta["name"],
            meta["namespace"],
            lambda live: without_unset({**(live.get("status") or {}), **status}),
            current=obj,
        )
        if old.get("phase") != status["phase"]:
            conds = [Condition.model_validate(c) for c in status["conditions"]]
            bad = [f"{c.type}: {c.message}" for c in conds if c.status != "True"]
            for i, m in enumerate(status.get("memberConditions") or []):
                bad += [
                    f"member {i}: {c['type']}: {c.get('message')}"
                    for c in m.get("conditions") or []
                    if c.get("status") != "True"
                ]
            await self.ctx.recorder.emit(
                obj,
                NORMAL if status["phase"] == "Ready" else WARNING,
                f"BackupBatch{status['phase']}",
                f"phase {old.get('phase') or 'unset'} -> {status['phase']}: "
                + ("; ".join(bad) or "all conditions are True"),
            )
