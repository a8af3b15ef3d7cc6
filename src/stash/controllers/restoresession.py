"""RestoreSession reconciler (stash-api.md §5.6, phases §1.5). One-shot.

Checks the Repository, its Secret, validation and the target; writes `totalHosts`
once the target is found (StatefulSet replicas, `volumeClaimTemplates` replicas, else
1); sets the deadline from `timeOut`; completes when every host reported (the agents
write `status.stats`) or the deadline passed, recording the metrics push, which makes the
phase final. Final phases are never re-processed. Not for: running restores.
"""

from __future__ import annotations

import datetime as dt
import logging

from pydantic import ValidationError

from stash.api import Repository, RestoreSession
from stash.api.common import Condition
from stash.api.restoresession import RestoreSessionStatus
from stash.contract import phases as P
from stash.contract.resources import RESTORESESSIONS, TARGET_KINDS
from stash.contract.sessions import INVOKER_FINALIZER, format_duration, total_hosts
from stash.controllers.context import ControllerContext
from stash.controllers.executor import (
    ensure_binding,
    ensure_restore_executor,
    is_job_model,
    workload_service_account,
)
from stash.controllers.finalizers import ensure_finalizer, remove_finalizer
from stash.kube.client import JSON, KubeError, NotFound
from stash.kube.conditions import is_true, set_condition
from stash.kube.controller import DONE, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.status import update_status
from stash.validation import ValidationFacts, parse_duration, validate_restore_session

log = logging.getLogger(__name__)
RECHECK = 5.0


class RestoreSessionReconciler:
    """Moves RestoreSessions through their phases."""

    name = "restoresession"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx

    async def reconcile(self, key: str) -> Result:
        ctx = self.ctx
        obj = ctx.caches.restoresessions.get(key)
        if obj is None:
            return DONE
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            await remove_finalizer(ctx.kube, RESTORESESSIONS, obj, INVOKER_FINALIZER)
            return DONE
        obj = await ensure_finalizer(ctx.kube, RESTORESESSIONS, obj, INVOKER_FINALIZER)
        status = RestoreSessionStatus.model_validate(obj.get("status") or {})
        if status.phase in P.FINAL_RESTORE_PHASES:
            return DONE
        now = ctx.now()
        created = dt.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
        try:
            rs = RestoreSession.model_validate(obj)
        except ValidationError as exc:
            conds = set_condition(
                status.conditions,
                P.VALIDATION_PASSED,
                False,
                "ResourceValidationFailed",
                f"the object does not parse: {exc}"[:1000],
            )
            await self._write(obj, lambda st: _with(st, conds))
            return DONE

        if P.restore_completed(status) or is_true(status.conditions, P.DEADLINE_EXCEEDED):
            await self._complete(obj, created, now)
            return DONE

        conds, hosts, requeue = await self._conditions(rs, obj, status)
        deadline = status.session_deadline
        if deadline is None and rs.spec and rs.spec.time_out:
            try:
                deadline = created + dt.timedelta(seconds=parse_duration(rs.spec.time_out))
            except ValueError:
                deadline = None

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
            st.conditions = c
            st.phase = P.restore_session_phase(st)  # type: ignore[assignment]
            return st

        await self._write(obj, decide)
        if deadline is not None:
            wait = (deadline - now).total_seconds()
            requeue = min(requeue, max(wait, 0.01)) if requeue is not None else max(wait, 0.01)
        return Result(requeue)

    async def _conditions(
        self, rs: RestoreSession, obj: JSON, status: RestoreSessionStatus
    ) -> tuple[list[Condition], int | None, float | None]:
        ctx = self.ctx
        ns = obj["metadata"]["namespace"]
        spec = rs.spec
        conds: list[Condition] = []
        requeue: float | None = None
        repo: Repository | None = None
        assert spec is not None
        if (spec.driver or "Restic") == "Restic":
            rname = spec.repository.name if spec.repository else None
            rns = (spec.repository.namespace if spec.repository else None) or ns
            robj = ctx.caches.repositories.get(f"{rns}/{rname}") if rname else None
            if robj is None:
                conds = set_condition(
                    conds,
                    P.REPOSITORY_FOUND,
                    False,
                    "RepositoryNotAvailable",
                    f"Repository {rns}/{rname} does not exist"
                    if rname
                    else "spec.repository.name is not set",
                )
                requeue = RECHECK
            else:
                conds = set_condition(
                    conds,
                    P.REPOSITORY_FOUND,
                    True,
                    "RepositoryAvailable",
                    f"Repository {rns}/{rname} found",
                )
                try:
                    repo = Repository.model_validate(robj)
                except ValidationError:
                    repo = None
                secret = (
                    repo.spec.backend.storage_secret_name
                    if repo and repo.spec and repo.spec.backend
                    else None
                )
                if secret and ctx.secret_exists(rns, secret):
                    conds = set_condition(
                        conds,
                        P.BACKEND_SECRET_FOUND,
                        True,
                        "BackendSecretAvailable",
                        f"Secret {rns}/{secret} found",
                    )
                else:
                    conds = set_condition(
                        conds,
                        P.BACKEND_SECRET_FOUND,
                        False,
                        "BackendSecretNotAvailable",
                        f"Secret {rns}/{secret} (storage secret of Repository {rns}/{rname}) "
                        "not found"
                        if secret
                        else f"Repository {rns}/{rname} has no storageSecretName",
                    )
                    requeue = RECHECK
        verdict = validate_restore_session(
            rs, None, ValidationFacts(repository=repo, namespace_labels=ctx.namespace_labels(ns))
        )
        conds = set_condition(
            conds,
            P.VALIDATION_PASSED,
            verdict.ok,
            "ResourceValidationPassed" if verdict.ok else "ResourceValidationFailed",
            "all validation rules passed" if verdict.ok else verdict.message,
        )
        hosts: int | None = None
        target = spec.target
        ref = target.ref if target else None
        vct = target.volume_claim_templates if target else None
        if ref is not None and ref.kind and ref.name:
            res = TARGET_KINDS.get(ref.kind)
            workload = None
            found: bool | None = None
            message = ""
            if res is None:
                message = f"target kind {ref.kind} is not one the operator can look up"
            else:
                try:
                    workload = await ctx.kube.get(res, ref.name, ref.namespace or ns)
                    found, message = True, f"{ref.kind} {ref.namespace or ns}/{ref.name} found"
                except NotFound:
                    found = False
                    message = f"{ref.kind} {ref.namespace or ns}/{ref.name} does not exist"
                except KubeError as exc:
                    message = f"looking up {ref.kind} {ref.name}: {exc.message or exc}"
            conds = set_condition(
                conds,
                P.RESTORE_TARGET_FOUND,
                "Unknown" if found is None else found,
                "TargetAvailable"
                if found
                else (
                    "TargetNotAvailable" if found is False else "UnableToCheckTargetAvailability"
                ),
                message,
            )
            if found:
                hosts = total_hosts(ref.kind, workload)
            else:
                requeue = RECHECK
        elif vct:
            conds = set_condition(
                conds,
                P.RESTORE_TARGET_FOUND,
                True,
                "TargetAvailable",
                "the target is created from spec.target.volumeClaimTemplates",
            )
            hosts = int(target.replicas or 1) if target else 1
        else:
            conds = set_condition(
                conds,
                P.RESTORE_TARGET_FOUND,
                False,
                "TargetNotAvailable",
                "spec.target needs a ref or volumeClaimTemplates",
            )
        if hosts is not None and verdict.ok and not any(c.status == "False" for c in conds):
            if is_job_model(obj):
                ok, message, job_hosts = await ensure_restore_executor(ctx, obj)
                hosts = job_hosts if vct else hosts
            else:
                ref_json = ((obj.get("spec") or {}).get("target") or {}).get("ref") or {}
                sa = await workload_service_account(ctx, ref_json, ns)
                await ensure_binding(ctx, ns, sa, "stash-restore-init-container")
                ok = True
                message = (
                    f"the stash-init init-container of {ref_json.get('kind')} "
                    f"{ns}/{ref_json.get('name')} runs this restore"
                )
            conds = set_condition(
                conds,
                P.RESTORE_EXECUTOR_ENSURED,
                ok,
                "SuccessfullyEnsuredRestoreExecutor" if ok else "FailedToEnsureRestoreExecutor",
                message,
            )
            if not ok:
                hosts = None
        else:
            hosts = None
        return conds, hosts, requeue

    async def _complete(self, obj: JSON, created: dt.datetime, now: dt.datetime) -> None:
        def finish(st: RestoreSessionStatus) -> RestoreSessionStatus:
            st.conditions = set_condition(
                st.conditions,
                P.METRICS_PUSHED,
                True,
                "SuccessfullyPushedMetrics",
                "no Pushgateway configured; nothing to push",
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

        written = await self._write(obj, finish)
        if written is not None:
            phase = (written.get("status") or {}).get("phase")
            errors = [
                f"host {s.get('hostname')}: {s.get('error')}"
                for s in (written.get("status") or {}).get("stats") or []
                if s.get("phase") != "Succeeded"
            ]
            await self.ctx.recorder.emit(
                written,
                NORMAL if phase == "Succeeded" else WARNING,
                f"RestoreSession{phase}",
                f"{phase}" + (": " + "; ".join(errors) if errors else ""),
            )

    async def _write(self, obj: JSON, change: object) -> JSON | None:
        meta = obj["metadata"]

        def compute(live: JSON) -> JSON | None:
            st = RestoreSessionStatus.model_validate(live.get("status") or {})
            if st.phase in P.FINAL_RESTORE_PHASES:
                return None
            new = change(st)  # type: ignore[operator]
            return new.to_wire()  # type: ignore[no-any-return]

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
