"""BackupConfiguration reconciler (stash-api.md §5.1, §1.3).

Each pass: finalizer; conditions RepositoryFound, BackendSecretFound, ValidationPassed,
BackupTargetFound and ScheduleRegistered (our cron engine replaces upstream's CronJob);
phase from `phases.backup_invoker_phase`; Events on every phase change. Facts first
(`ControllerContext.invoker_facts`), then a pure decision (`_decide`), then the side
effects (the cron engine, the status write). A schedule is registered while the object
is valid (paused keeps it registered but silent), so sessions of a NotReady invoker are
still created and then Skipped with the reason, as upstream does. Not for: creating
sessions (the cron engine) or running backups.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from stash.api import BackupConfiguration
from stash.api.common import Condition
from stash.contract import phases as P
from stash.contract.resources import BACKUPCONFIGURATIONS, TARGET_KINDS
from stash.contract.sessions import INVOKER_FINALIZER
from stash.contract.workloads import runs_in_workload
from stash.controllers.access import revoke_repository_access
from stash.controllers.conditions import (
    Check,
    InvokerFacts,
    TargetFacts,
    apply_checks,
    repository_checks,
    target_check,
    unparsable,
    usage_check,
)
from stash.controllers.context import ControllerContext
from stash.controllers.nextrun import earliest, next_run, without_unset
from stash.controllers.volumesnapshot import is_snapshotter, snapshotter_check
from stash.cron import CronError, CronSchedule, parse_schedule
from stash.inject import backup_injection_problem, injected_backup_invoker
from stash.kube.client import JSON, key_of
from stash.kube.conditions import same
from stash.kube.controller import DONE, ObjectHooks, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.status import update_status
from stash.validation import validate_backup_configuration

log = logging.getLogger(__name__)

TIMEZONE_ANNOTATION = "stash.appscode.com/schedule-timezone"
TARGET_RECHECK = 15.0


def engine_key(kind: str, key: str) -> str:
    """The cron engine's key for an invoker: `<Kind>/<namespace>/<name>`."""
    return f"{kind}/{key}"


def repository_key(obj: JSON) -> list[str]:
    """Index: the `namespace/name` of the Repository a BackupConfiguration uses."""
    spec = obj.get("spec") or {}
    repo = spec.get("repository") or {}
    if not repo.get("name"):
        return []
    ns = repo.get("namespace") or obj["metadata"].get("namespace")
    return [f"{ns}/{repo['name']}"]


@dataclass(frozen=True)
class _Decision:
    conditions: list[Condition]
    schedule: CronSchedule | None
    """The schedule to register (None: unregister; the object is invalid)."""
    recheck_target: bool


def _validation(
    bc: BackupConfiguration, facts: InvokerFacts, default_tz: str
) -> tuple[Check, CronSchedule | None]:
    """ValidationPassed (the rules, and a schedule the cron engine can run) and the schedule."""
    verdict = validate_backup_configuration(bc, None, facts.validation())
    problems = [str(v) for v in verdict.violations]
    schedule: CronSchedule | None = None
    text = bc.spec.schedule if bc.spec else None
    if text:
        try:
            tz = (bc.metadata.annotations or {}).get(TIMEZONE_ANNOTATION)
            schedule = parse_schedule(text, default_tz, tz)
        except CronError as exc:
            if not any("schedule" in p for p in problems):
                problems.append(f"spec.schedule: {exc}")
    else:
        problems.append("spec.schedule: required (a cron expression such as */5 * * * *)")
    if problems:
        return Check(
            P.VALIDATION_PASSED, False, "ResourceValidationFailed", "; ".join(problems)
        ), None
    return Check(
        P.VALIDATION_PASSED, True, "ResourceValidationPassed", "all validation rules passed"
    ), schedule


def sidecar_check(bc: BackupConfiguration, target: TargetFacts) -> Check | None:
    """StashSidecarInjected for a sidecar-model invoker whose workload was found (pure):
    False when the sidecar cannot be injected (the reason from the injector) or the
    workload runs another invoker's sidecar; Unknown while the injection is pending."""
    spec = bc.spec
    if spec is None or spec.target is None or target.found is not True or target.workload is None:
        return None
    if not runs_in_workload(spec.driver, spec.task.name if spec.task else None, target.kind):
        return None
    what = f"{target.kind} {target.namespace}/{target.name}"
    problem = backup_injection_problem({**target.workload, "kind": target.kind}, bc)
    if problem:
        return Check(P.STASH_SIDECAR_INJECTED, False, "SidecarInjectionFailed", problem)
    running = injected_backup_invoker(target.workload)
    if running == bc.metadata.name:
        return Check(
            P.STASH_SIDECAR_INJECTED, True, "SidecarInjectionSucceeded", f"{what} runs the sidecar"
        )
    if running:
        message = (
            f"{what} runs the backup sidecar of BackupConfiguration {running} (the newest "
            "BackupConfiguration that targets a workload is the one injected)"
        )
        return Check(P.STASH_SIDECAR_INJECTED, False, "SidecarInjectionFailed", message)
    message = f"waiting for the backup sidecar to be injected into {what}"
    return Check(P.STASH_SIDECAR_INJECTED, "Unknown", "SidecarInjectionPending", message)


def _decide(
    bc: BackupConfiguration, facts: InvokerFacts, default_tz: str, snapshotter: Check | None = None
) -> _Decision:
    """The conditions of one pass, and whether the schedule is registered (pure);
    `snapshotter`: VolumeSnapshotClassFound of a VolumeSnapshotter invoker."""
    checks: list[Check] = [snapshotter] if snapshotter is not None else []
    if facts.repository is not None:
        checks.extend(repository_checks(facts.repository))
    usage = usage_check(facts, str(bc.metadata.namespace))
    if usage is not None:
        checks.append(usage)
    valid, schedule = _validation(bc, facts, default_tz)
    checks.append(valid)
    recheck = False
    if facts.target is not None:
        checks.append(target_check(P.BACKUP_TARGET_FOUND, facts.target))
        recheck = facts.target.found is not True and facts.target.kind in TARGET_KINDS
        injected = sidecar_check(bc, facts.target)
        # a refused usage policy injects nothing, and RepositoryUsageAllowed says why
        if injected is not None and not (usage is not None and usage.status is False):
            checks.append(injected)
    if schedule is not None:
        paused = " (paused: no sessions are created)" if bc.spec and bc.spec.paused else ""
        message = f'schedule "{schedule}" registered{paused}'
        checks.append(Check(P.SCHEDULE_REGISTERED, True, "ScheduleRegistrationSucceeded", message))
    else:
        message = "no schedule is registered while the BackupConfiguration is invalid"
        checks.append(Check(P.SCHEDULE_REGISTERED, False, "ScheduleRegistrationFailed", message))
    old = (bc.status.conditions if bc.status else None) or []
    if snapshotter is None:  # the driver is (again) Restic: no snapshot class to look for
        old = [c for c in old if c.type != P.VOLUME_SNAPSHOT_CLASS_FOUND]
    conditions = apply_checks(old, checks, observed_generation=bc.metadata.generation)
    recheck = recheck or (snapshotter is not None and snapshotter.status is not True)
    return _Decision(conditions, schedule, recheck)


def invalid_status(obj: JSON, error: ValidationError) -> JSON:
    """The status of a scheduled invoker (BackupConfiguration, BackupBatch) that does
    not parse: phase Invalid, ValidationPassed False with the error, no next backup."""
    generation = obj["metadata"].get("generation")
    conds = unparsable(None, error, generation)
    return {
        "observedGeneration": generation,
        "phase": "Invalid",
        "conditions": [c.to_wire() for c in conds],
        "nextBackupTime": None,
    }


class BackupConfigurationReconciler:
    """Keeps a BackupConfiguration's conditions, phase and schedule in step."""

    name = "backupconfiguration"
    model = BackupConfiguration

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.hooks = ObjectHooks[BackupConfiguration](
            finalizer=INVOKER_FINALIZER,
            gone=self._unregister,
            finalize=self._finalize,
            invalid=self._invalid,
        )

    async def reconcile(self, bc: BackupConfiguration, obj: JSON) -> Result:
        ctx = self.ctx
        facts = await ctx.invoker_facts(bc)
        snapshotter = await snapshotter_check(ctx, bc) if is_snapshotter(bc) else None
        decision = _decide(bc, facts, ctx.settings.default_timezone, snapshotter)
        ekey = engine_key("BackupConfiguration", key_of(obj))
        if decision.schedule is not None:
            paused = bool(bc.spec and bc.spec.paused)
            ctx.engine.register(ekey, decision.schedule, paused, bc.metadata.creation_timestamp)
        else:
            ctx.engine.unregister(ekey)
        driver = bc.spec.driver if bc.spec else None
        status = {
            "observedGeneration": bc.metadata.generation,
            "phase": P.backup_invoker_phase(decision.conditions, driver),
            "conditions": [c.to_wire() for c in decision.conditions],
        }
        upcoming = next_run(ctx.engine, ekey)
        status["nextBackupTime"] = upcoming.wire
        await self._write(obj, status, bc)
        recheck = TARGET_RECHECK if decision.recheck_target else None
        return Result(earliest(recheck, upcoming.recheck_after))

    async def _unregister(self, key: str) -> None:
        self.ctx.engine.unregister(engine_key("BackupConfiguration", key))

    async def _finalize(self, obj: JSON, bc: BackupConfiguration | None) -> None:
        await self._unregister(key_of(obj))
        await revoke_repository_access(self.ctx, obj)

    async def _invalid(self, obj: JSON, error: ValidationError) -> Result:
        """Phase Invalid with the parse error (as ValidationPassed); no schedule."""
        await self._write(obj, invalid_status(obj, error), None)
        await self._unregister(key_of(obj))
        return DONE

    async def _write(self, obj: JSON, status: JSON, bc: BackupConfiguration | None) -> None:
        old = obj.get("status") or {}
        old_conds = bc.status.conditions if bc and bc.status else None
        new_conds = [Condition.model_validate(c) for c in status["conditions"]]
        if (
            old.get("phase") == status["phase"]
            and old.get("observedGeneration") == status["observedGeneration"]
            and old.get("nextBackupTime") == status.get("nextBackupTime")
            and same(old_conds, new_conds)
        ):
            return
        meta = obj["metadata"]
        await update_status(
            self.ctx.kube,
            BACKUPCONFIGURATIONS,
            meta["name"],
            meta["namespace"],
            lambda live: without_unset({**(live.get("status") or {}), **status}),
            current=obj,
        )
        if old.get("phase") != status["phase"]:
            bad = [c for c in new_conds if c.status != "True" and c.type != P.SCHEDULE_REGISTERED]
            reason = f"BackupConfiguration{status['phase']}"
            detail = "; ".join(f"{c.type}: {c.message}" for c in bad) or "all conditions are True"
            # In the background: thousands reaching Ready at once wait for no Event.
            self.ctx.recorder.emit_soon(
                obj,
                NORMAL if status["phase"] == "Ready" else WARNING,
                reason,
                f"phase {old.get('phase') or 'unset'} -> {status['phase']}: {detail}",
            )
