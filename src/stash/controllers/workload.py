"""Workload reconciler: the backup sidecar / restore init-container are where they should
be, also when the mutating webhook was down, slow or skipped (stash-api.md §4.1).

For each Deployment, StatefulSet, DaemonSet, ReplicaSet and ReplicationController it
computes `stash.inject.desired_workload(...)` from the BackupConfigurations and
RestoreSessions that target it and, when that differs from the stored object, patches
the difference (a JSON patch guarded by the resourceVersion it was computed from).
When the webhook did its job the two are equal and nothing is written. Invokers that
cannot be injected (a volume they mount does not exist) get a Warning Event.
ReplicaSets owned by a Deployment are left to the Deployment's template; the pods of a
ReplicaSet or ReplicationController, which do not roll out, are recreated
(`controllers.rollout`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import jsonpatch
from pydantic import ValidationError

from stash.api import (
    BackupBatch,
    BackupConfiguration,
    Repository,
    RestoreBatch,
    RestoreSession,
)
from stash.contract.batches import backup_members, restore_members
from stash.contract.workloads import WORKLOADS
from stash.controllers.access import ensure_binding, grant_repository_access
from stash.controllers.autobackup import plan_for
from stash.controllers.context import ControllerContext
from stash.controllers.rollout import RESTARTED_KINDS, carries_injection, restart_stale_pods
from stash.inject import (
    auto_backup_invoker,
    choose_backup_invoker,
    desired_workload,
    repository_refusal,
    select_restore_invoker,
)
from stash.inject.pod import pod_spec_of
from stash.kube.client import JSON, JSON_PATCH, Conflict, Invalid, NotFound, Resource
from stash.kube.controller import DONE, Result
from stash.kube.events import WARNING
from stash.kube.informer import Informer

log = logging.getLogger(__name__)

#: The workload kinds the operator watches and repairs, by kind. DeploymentConfig
#: (`apps.openshift.io`) is left out: its API exists only on OpenShift.
WATCHED_WORKLOADS: dict[str, Resource] = {
    kind: res for kind, res in WORKLOADS.items() if res.group != "apps.openshift.io"
}


def workload_key(kind: str, namespace: str, name: str) -> str:
    """Queue key of a workload: `<Kind>/<namespace>/<name>`."""
    return f"{kind}/{namespace}/{name}"


def target_workload_keys(invoker: JSON) -> list[str]:
    """The workloads an invoker targets: a BackupConfiguration's / RestoreSession's
    `spec.target`, or every member's target of a BackupBatch / RestoreBatch."""
    spec = invoker.get("spec") or {}
    targets = [
        spec.get("target") or {},
        *((m or {}).get("target") or {} for m in spec.get("members") or []),
    ]
    out = []
    for target in targets:
        ref = target.get("ref") or {}
        kind, name = ref.get("kind"), ref.get("name")
        if kind in WATCHED_WORKLOADS and name:
            ns = ref.get("namespace") or invoker["metadata"]["namespace"]
            out.append(workload_key(kind, ns, name))
    return out


def _parse(model: Any, objs: list[JSON]) -> list[Any]:
    out = []
    for o in objs:
        try:
            out.append(model.model_validate(o))
        except ValidationError:
            continue  # the invoker's own reconciler reports it Invalid
    return out


def _batch_members(
    ctx: ControllerContext, ns: str, key: str
) -> tuple[list[BackupConfiguration], list[RestoreSession]]:
    """The members of the namespace's BackupBatches and RestoreBatches that target the
    workload `key`, as the invokers they stand for (`stash.contract.batches`)."""
    backups: list[BackupConfiguration] = []
    restores: list[RestoreSession] = []
    c = ctx.caches

    def targeting(cache: Informer | None) -> list[JSON]:
        return [o for o in (cache.list(ns) if cache else []) if key in target_workload_keys(o)]

    for raw in targeting(c.backupbatches):
        with contextlib.suppress(ValidationError):
            backups.extend(backup_members(ctx.parse(BackupBatch, raw)))
    for raw in targeting(c.restorebatches):
        with contextlib.suppress(ValidationError):
            restores.extend(restore_members(ctx.parse(RestoreBatch, raw)))
    return backups, restores


class WorkloadReconciler:
    """Repairs (or removes) agent injection on workloads."""

    name = "workload"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.workloads = ctx.workloads
        self.settings = ctx.settings
        self.rolling: set[str] = set()
        """ReplicaSets/RCs patched by us whose pods may not follow yet (`rollout`)."""

    async def reconcile(self, key: str) -> Result:
        kind, ns, name = key.split("/", 2)
        informer = self.workloads.get(kind)
        obj = informer.get(f"{ns}/{name}") if informer else None
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return DONE
        if kind == "ReplicaSet" and any(
            o.get("kind") == "Deployment" and o.get("controller")
            for o in obj["metadata"].get("ownerReferences") or []
        ):
            return DONE
        backup, restore, repos = self._invokers(kind, ns, name, obj)
        current = {**obj, "kind": kind, "apiVersion": WATCHED_WORKLOADS[kind].api_version}
        labels = self.ctx.namespace_labels(ns)
        desired = desired_workload(current, backup, restore, self.settings, repos, labels)
        # The agent's RBAC first, so the injected containers can work from their start
        # (a binding made at the first session would leave them waiting for RBAC); none
        # for an invoker the Repository's usage policy refuses (it is not injected).
        account = str(pod_spec_of(obj).get("serviceAccountName") or "default")
        problems = list(desired.problems)
        for invoker, role in ((backup, "stash-sidecar"), (restore, "stash-restore-init-container")):
            if invoker is None or repository_refusal(invoker, repos, labels):
                continue
            await ensure_binding(self.ctx, ns, account, role)
            problem = await grant_repository_access(self.ctx, invoker, account)
            if problem:
                problems.append(problem)
        for problem in problems:
            await self.ctx.recorder.emit(current, WARNING, "StashInjectionFailed", problem)
        patch = _patch(current, desired.workload)
        if not patch:
            # The stored template is what it should be: a ReplicaSet's or RC's pods
            # follow it only when recreated (`controllers.rollout`).
            if key not in self.rolling and not carries_injection(obj):
                return DONE
            again = await restart_stale_pods(self.ctx, kind, obj)
            if again is None:
                self.rolling.discard(key)
                return DONE
            return Result(requeue_after=again)
        ops = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": obj["metadata"]["resourceVersion"],
            }
        ]
        try:
            await self.ctx.kube.patch(
                WATCHED_WORKLOADS[kind], name, ops + patch, ns, content_type=JSON_PATCH
            )
        except (Conflict, NotFound):
            return Result(requeue_after=0.5)
        except Invalid:
            # A failed `test` of the resourceVersion is also a 422: if the object moved
            # on, it was a conflict (try again with the newer object); if not, the patch
            # itself is invalid and the error is real.
            live = await self.ctx.kube.get(WATCHED_WORKLOADS[kind], name, ns)
            if live["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                return Result(requeue_after=0.5)
            raise
        log.info("%s: agent injection repaired (%d operations)", key, len(patch))
        if kind in RESTARTED_KINDS:
            self.rolling.add(key)
        return DONE

    def _invokers(
        self, kind: str, ns: str, name: str, obj: JSON
    ) -> tuple[BackupConfiguration | None, RestoreSession | None, dict[str, Repository]]:
        """The backup and restore invokers the workload carries, and their Repositories."""
        key = workload_key(kind, ns, name)
        caches = self.ctx.caches
        # Parse only the invokers that target this workload (cheap dict check first).
        mine = [key]
        bcs = _parse(
            BackupConfiguration,
            [b for b in caches.backupconfigurations.list(ns) if target_workload_keys(b) == mine],
        )
        # The init-container stays until its RestoreSession is deleted (§4.3).
        rss = _parse(
            RestoreSession,
            [r for r in caches.restoresessions.list(ns) if target_workload_keys(r) == mine],
        )
        backup_views, restore_views = _batch_members(self.ctx, ns, key)
        # Auto-backup's invoker is the one the annotations resolve to now (the stored
        # object may lag behind, or still exist after the annotation went).
        plan = plan_for(self.ctx, kind, obj)
        planned = plan.invoker() if plan is not None else None
        auto = auto_backup_invoker(planned, plan is not None, bcs, kind, ns, name)
        backup = choose_backup_invoker([*bcs, *backup_views], auto, kind, ns, name)
        restore = select_restore_invoker([*rss, *restore_views], kind, ns, name)
        repos: dict[str, Repository] = plan.repositories() if plan is not None else {}
        for inv in (backup, restore):
            if inv is None or inv.spec is None or inv.spec.repository is None:
                continue
            rkey = f"{inv.spec.repository.namespace or ns}/{inv.spec.repository.name}"
            robj = caches.repositories.get(rkey)
            if robj is not None:
                with contextlib.suppress(ValidationError):
                    repos[rkey] = Repository.model_validate(robj)
        return backup, restore, repos


def _patch(current: JSON, desired: JSON) -> list[JSON]:
    """JSON patch from current to desired, limited to what injection touches."""
    before = {
        "metadata": {"annotations": current["metadata"].get("annotations") or {}},
        "spec": current.get("spec"),
    }
    after_ann: JSON = desired["metadata"].get("annotations") or {}
    after = {"metadata": {"annotations": after_ann}, "spec": desired.get("spec")}
    ops: list[JSON] = list(jsonpatch.make_patch(before, after))
    if ops and not current["metadata"].get("annotations"):
        # make_patch writes into /metadata/annotations, which must exist first.
        ops = [op for op in ops if not op["path"].startswith("/metadata/annotations/")] + [
            {
                "op": "add",
                "path": "/metadata/annotations",
                "value": after_ann,
            }
        ]
    return ops
