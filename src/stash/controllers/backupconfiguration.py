"""BackupConfiguration reconciler (stash-api.md §5.1, §1.3).

Each pass: finalizer; conditions RepositoryFound, BackendSecretFound, ValidationPassed,
BackupTargetFound and ScheduleRegistered (our cron engine replaces upstream's CronJob);
phase from `phases.backup_invoker_phase`; Events on every phase change. A schedule is
registered while the object is valid (paused keeps it registered but silent), so
sessions of a NotReady invoker are still created and then Skipped with the reason, as
upstream does. Not for: creating sessions (the cron engine) or running backups.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from stash.api import BackupConfiguration, Repository
from stash.api.common import Condition
from stash.contract import phases as P
from stash.contract.resources import BACKUPCONFIGURATIONS, TARGET_KINDS
from stash.contract.sessions import INVOKER_FINALIZER
from stash.controllers.context import ControllerContext
from stash.controllers.finalizers import ensure_finalizer, remove_finalizer
from stash.cron import CronError, CronSchedule, parse_schedule
from stash.kube.client import JSON, KubeError, NotFound
from stash.kube.conditions import same, set_condition
from stash.kube.controller import DONE, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.status import update_status
from stash.validation import ValidationFacts, validate_backup_configuration

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


class BackupConfigurationReconciler:
    """Keeps a BackupConfiguration's conditions, phase and schedule in step."""

    name = "backupconfiguration"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx

    async def reconcile(self, key: str) -> Result:
        ctx = self.ctx
        ekey = engine_key("BackupConfiguration", key)
        obj = ctx.caches.backupconfigurations.get(key)
        if obj is None:
            ctx.engine.unregister(ekey)
            return DONE
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            ctx.engine.unregister(ekey)
            await remove_finalizer(ctx.kube, BACKUPCONFIGURATIONS, obj, INVOKER_FINALIZER)
            return DONE
        obj = await ensure_finalizer(ctx.kube, BACKUPCONFIGURATIONS, obj, INVOKER_FINALIZER)
        try:
            bc = BackupConfiguration.model_validate(obj)
        except ValidationError as exc:
            await self._write(obj, self._invalid(obj, f"the object does not parse: {exc}"), None)
            ctx.engine.unregister(ekey)
            return DONE

        conds, requeue, schedule = await self._conditions(bc, obj)
        if schedule is not None and P.is_valid(conds):
            ctx.engine.register(
                ekey, schedule, bool(bc.spec and bc.spec.paused), bc.metadata.creation_timestamp
            )
            conds = set_condition(
                conds,
                P.SCHEDULE_REGISTERED,
                True,
                "ScheduleRegistrationSucceeded",
                f'schedule "{schedule}" registered'
                + (" (paused: no sessions are created)" if bc.spec and bc.spec.paused else ""),
                observed_generation=meta.get("generation"),
            )
        else:
            ctx.engine.unregister(ekey)
            conds = set_condition(
                conds,
                P.SCHEDULE_REGISTERED,
                False,
                "ScheduleRegistrationFailed",
                "no schedule is registered while the BackupConfiguration is invalid",
                observed_generation=meta.get("generation"),
            )
        driver = bc.spec.driver if bc.spec else None
        status = {
            "observedGeneration": meta.get("generation"),
            "phase": P.backup_invoker_phase(conds, driver),
            "conditions": [c.to_wire() for c in conds],
        }
        await self._write(obj, status, bc)
        return Result(requeue)

    async def _conditions(
        self, bc: BackupConfiguration, obj: JSON
    ) -> tuple[list[Condition], float | None, CronSchedule | None]:
        ctx = self.ctx
        meta = obj["metadata"]
        gen = meta.get("generation")
        ns = str(meta.get("namespace"))
        spec = bc.spec
        conds = list(bc.status.conditions or []) if bc.status else []
        requeue: float | None = None
        repo: Repository | None = None
        assert spec is not None
        if (spec.driver or "Restic") == "Restic":
            rkey = (repository_key(obj) or [""])[0]
            robj = ctx.caches.repositories.get(rkey) if rkey else None
            if robj is None or robj["metadata"].get("deletionTimestamp"):
                what = f"Repository {rkey}" if rkey else "spec.repository.name"
                msg = f"{what} does not exist" if rkey else f"{what} is not set"
                if robj is not None:
                    msg = f"Repository {rkey} is being deleted"
                conds = set_condition(
                    conds,
                    P.REPOSITORY_FOUND,
                    False,
                    "RepositoryNotAvailable",
                    msg,
                    observed_generation=gen,
                )
                conds = set_condition(
                    conds,
                    P.BACKEND_SECRET_FOUND,
                    "Unknown",
                    "UnableToCheckBackendSecret",
                    "the Repository is not available",
                    observed_generation=gen,
                )
            else:
                conds = set_condition(
                    conds,
                    P.REPOSITORY_FOUND,
                    True,
                    "RepositoryAvailable",
                    f"Repository {rkey} found",
                    observed_generation=gen,
                )
                try:
                    repo = ctx.parse(Repository, robj)
                except ValidationError:
                    repo = None
                conds = self._secret_condition(conds, robj, repo, gen)
        verdict_ctx = ValidationFacts(repository=repo, namespace_labels=ctx.namespace_labels(ns))
        verdict = validate_backup_configuration(bc, None, verdict_ctx)
        schedule: CronSchedule | None = None
        problems = [str(v) for v in verdict.violations]
        if spec.schedule:
            try:
                tz = (meta.get("annotations") or {}).get(TIMEZONE_ANNOTATION)
                schedule = parse_schedule(spec.schedule, ctx.default_tz, tz)
            except CronError as exc:
                if not any("schedule" in p for p in problems):
                    problems.append(f"spec.schedule: {exc}")
        else:
            problems.append("spec.schedule: required (a cron expression such as */5 * * * *)")
        if problems:
            conds = set_condition(
                conds,
                P.VALIDATION_PASSED,
                False,
                "ResourceValidationFailed",
                "; ".join(problems),
                observed_generation=gen,
            )
        else:
            conds = set_condition(
                conds,
                P.VALIDATION_PASSED,
                True,
                "ResourceValidationPassed",
                "all validation rules passed",
                observed_generation=gen,
            )
        conds, missing = await self._target_condition(conds, obj, gen)
        if missing:
            requeue = TARGET_RECHECK
        return conds, requeue, schedule

    def _secret_condition(
        self, conds: list[Condition], robj: JSON, repo: Repository | None, gen: Any
    ) -> list[Condition]:
        rns = robj["metadata"]["namespace"]
        secret = (
            repo.spec.backend.storage_secret_name
            if repo and repo.spec and repo.spec.backend
            else None
        )
        if not secret:
            return set_condition(
                conds,
                P.BACKEND_SECRET_FOUND,
                False,
                "BackendSecretNotAvailable",
                f"Repository {rns}/{robj['metadata']['name']} has no "
                "spec.backend.storageSecretName",
                observed_generation=gen,
            )
        if not self.ctx.secret_exists(rns, secret):
            return set_condition(
                conds,
                P.BACKEND_SECRET_FOUND,
                False,
                "BackendSecretNotAvailable",
                f"Secret {rns}/{secret} (storage secret of Repository "
                f"{rns}/{robj['metadata']['name']}) not found",
                observed_generation=gen,
            )
        return set_condition(
            conds,
            P.BACKEND_SECRET_FOUND,
            True,
            "BackendSecretAvailable",
            f"Secret {rns}/{secret} found",
            observed_generation=gen,
        )

    async def _target_condition(
        self, conds: list[Condition], obj: JSON, gen: Any
    ) -> tuple[list[Condition], bool]:
        """BackupTargetFound, and whether to look again soon (target missing/unknown)."""
        ref = ((obj.get("spec") or {}).get("target") or {}).get("ref") or {}
        kind, name = ref.get("kind"), ref.get("name")
        if not kind or not name:
            return conds, False
        ns = ref.get("namespace") or obj["metadata"]["namespace"]
        found, detail = await self._target_exists(kind, ns, name)
        status: bool | str
        if found is True:
            status, reason, message = True, "TargetAvailable", f"{kind} {ns}/{name} found"
        elif found is False:
            status, reason = False, "TargetNotAvailable"
            message = f"{kind} {ns}/{name} does not exist"
        else:
            status, reason, message = "Unknown", "UnableToCheckTargetAvailability", detail
        conds = set_condition(
            conds, P.BACKUP_TARGET_FOUND, status, reason, message, observed_generation=gen
        )
        return conds, found is not True and TARGET_KINDS.get(kind) is not None

    async def _target_exists(self, kind: str, ns: str, name: str) -> tuple[bool | None, str]:
        """(True/False, "") when known; (None, why) when it cannot be checked."""
        res = TARGET_KINDS.get(kind)
        if res is None:
            return None, f"target kind {kind} is not one the operator can look up"
        cached = (self.ctx.hooks.get("workloads") or {}).get(kind)
        if cached is not None:
            return cached.get(f"{ns}/{name}") is not None, ""
        try:
            await self.ctx.kube.get(res, name, ns)
        except NotFound:
            return False, ""
        except KubeError as exc:
            return None, f"looking up {kind} {ns}/{name}: {exc.message or exc}"
        return True, ""

    def _invalid(self, obj: JSON, message: str) -> JSON:
        conds = set_condition(
            None,
            P.VALIDATION_PASSED,
            False,
            "ResourceValidationFailed",
            message[:1000],
            observed_generation=obj["metadata"].get("generation"),
        )
        return {
            "observedGeneration": obj["metadata"].get("generation"),
            "phase": "Invalid",
            "conditions": [c.to_wire() for c in conds],
        }

    async def _write(self, obj: JSON, status: JSON, bc: BackupConfiguration | None) -> None:
        old = obj.get("status") or {}
        old_conds = bc.status.conditions if bc and bc.status else None
        new_conds = [Condition.model_validate(c) for c in status["conditions"]]
        if (
            old.get("phase") == status["phase"]
            and old.get("observedGeneration") == status["observedGeneration"]
            and same(old_conds, new_conds)
        ):
            return
        meta = obj["metadata"]
        await update_status(
            self.ctx.kube,
            BACKUPCONFIGURATIONS,
            meta["name"],
            meta["namespace"],
            lambda live: {**(live.get("status") or {}), **status},
            current=obj,
        )
        if old.get("phase") != status["phase"]:
            bad = [c for c in new_conds if c.status != "True" and c.type != P.SCHEDULE_REGISTERED]
            reason = f"BackupConfiguration{status['phase']}"
            detail = "; ".join(f"{c.type}: {c.message}" for c in bad) or "all conditions are True"
            await self.ctx.recorder.emit(
                obj,
                NORMAL if status["phase"] == "Ready" else WARNING,
                reason,
                f"phase {old.get('phase') or 'unset'} -> {status['phase']}: {detail}",
            )
