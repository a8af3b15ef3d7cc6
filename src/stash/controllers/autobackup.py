"""Auto-backup controller (stash-api.md §3): annotated workloads, PVCs and AppBindings get
the Repository and BackupConfiguration their BackupBlueprint describes.

One key per annotated object (`<Kind>/<namespace>/<name>`, the workload reconciler's
keys). Each pass gathers the facts (`plan_for`: the object, its blueprints and who owns
the names the plan may take, from the caches), decides with the pure
`stash.validation.autobackup.checked_plan` (the webhook calls the same), then acts:

* annotated and resolvable: server-side apply the Repository, then the
  BackupConfiguration (field manager `stash-auto-backup`; an object whose recorded plan
  hash is unchanged is not written again, so 500 workloads converge without a write
  loop), owned by the object when they share its namespace; auto-backup
  BackupConfigurations of the object that the plan no longer has are deleted; a Normal
  Event `AutoBackupResourcesCreationSucceeded` when something was written;
* annotated but not resolvable (unknown blueprint, malformed `volume-mounts`, a mount
  the pod template lacks, a variable without a value, two blueprints on one backend
  location, a name someone else owns, an object validation would refuse): a Warning
  Event `AutoBackupResourcesCreationFailed` naming the annotation and what to fix, and
  nothing is created or changed;
* not annotated (any more): its auto-backup BackupConfigurations are deleted — the
  sidecar goes with them — and its Repository is kept with its snapshots
  (`AutoBackupResourcesDeletionSucceeded`);
* gone: same-namespace objects go with it by garbage collection (owner references);
  those in another namespace (repoNamespace, backupNamespace) are deleted here.

The sidecar itself is the workload reconciler's (and the webhook's) business: both
inject for the plan's BackupConfiguration (`plan_for`), so it may be in the pod before
the object exists. Not for: injection, scheduling or running backups.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping

from pydantic import ValidationError

from stash.api import BackupBlueprint
from stash.contract.autobackup import (
    ANN_AUTO_TARGET,
    ANN_BLUEPRINT,
    LABEL_AUTO_BACKUP,
    Target,
    blueprint_names,
    owner_id,
    wants_auto_backup,
)
from stash.contract.blueprint import Plan, candidate_names
from stash.contract.resources import (
    APPBINDINGS,
    BACKUPCONFIGURATIONS,
    REPOSITORIES,
    TARGET_KINDS,
)
from stash.contract.workloads import WORKLOAD_KINDS
from stash.controllers.context import ControllerContext
from stash.inject import pod_volume_names
from stash.kube.client import JSON, Kube, KubeError, NotFound, Resource, key_of
from stash.kube.controller import DONE, Result
from stash.kube.events import NORMAL
from stash.kube.informer import Informer
from stash.validation.autobackup import checked_plan

__all__ = [
    "AUTO_TARGET_INDEX",
    "BLUEPRINT_INDEX",
    "FIELD_MANAGER",
    "AutoBackupReconciler",
    "appbindings_served",
    "auto_target_keys",
    "plan_for",
    "target_blueprints",
]

log = logging.getLogger(__name__)

FIELD_MANAGER = "stash-auto-backup"
ANN_PLAN_HASH = "stash.appscode.com/auto-backup-hash"
"""On each object auto-backup applies: the hash of what it applied (skip when equal)."""
AUTO_TARGET_INDEX = "auto-target"
BLUEPRINT_INDEX = "blueprint"
RETRY_DELETING = 1.0


def auto_target_keys(obj: JSON) -> list[str]:
    """Index: the `<Kind>/<namespace>/<name>` an auto-backup object backs up."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(LABEL_AUTO_BACKUP) != "true":
        return []
    target = (meta.get("annotations") or {}).get(ANN_AUTO_TARGET)
    return [str(target)] if target else []


def target_blueprints(obj: JSON) -> list[str]:
    """Index: the blueprint names an object's annotation lists."""
    return list(blueprint_names((obj.get("metadata") or {}).get("annotations")))


def controlled_by_workload(obj: JSON) -> bool:
    """A ReplicaSet of a Deployment (or a pod template copy like it) inherits the
    Deployment's annotations; only the owner is a target."""
    return any(
        ref.get("controller") and ref.get("kind") in WORKLOAD_KINDS
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def _identity(kind: str, obj: JSON) -> JSON:
    """The cached object with its kind and apiVersion (list items lack them)."""
    return {**obj, "kind": kind, "apiVersion": TARGET_KINDS[kind].api_version}


def plan_for(ctx: ControllerContext, kind: str, obj: JSON) -> Plan | None:
    """The auto-backup plan of a cached object (None: it names no blueprint)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if not wants_auto_backup(annotations) or controlled_by_workload(obj):
        return None
    volumes = None
    if kind in WORKLOAD_KINDS:
        volumes = frozenset(pod_volume_names(_identity(kind, obj)))
    target = Target.of(kind, obj, volumes)
    names = blueprint_names(annotations)
    blueprints: dict[str, BackupBlueprint | None] = {}
    cache = ctx.caches.backupblueprints
    for name in names:
        raw = cache.get(name) if cache is not None else None
        try:
            blueprints[name] = ctx.parse(BackupBlueprint, raw) if raw is not None else None
        except ValidationError:
            blueprints[name] = None
    caches: Mapping[str, Informer] = {
        "Repository": ctx.caches.repositories,
        "BackupConfiguration": ctx.caches.backupconfigurations,
    }
    existing: dict[tuple[str, str, str], str] = {}
    for what, ns, name in candidate_names(target, names, blueprints):
        found = caches[what].get(f"{ns}/{name}")
        if found is not None:
            existing[(what, ns, name)] = owner_id(found)
    return checked_plan(target, blueprints, existing)


async def appbindings_served(kube: Kube) -> bool:
    """Whether the cluster serves AppBindings (their CRD comes with KubeDB or the Stash
    catalog, not with the operator); says so in the log when it does not."""
    version = APPBINDINGS.api_version
    try:
        await kube.request("GET", f"/apis/{version}")
    except NotFound:
        log.info(
            "AppBinding auto-backup is off: this cluster does not serve %s AppBindings "
            "(install the AppBinding CRD, then restart the operator)",
            version,
        )
        return False
    except KubeError as exc:
        log.warning(
            "AppBinding auto-backup is off: could not tell whether %s is served: %s",
            version,
            exc,
        )
        return False
    return True


def _plan_hash(body: JSON) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class AutoBackupReconciler:
    """Keeps each annotated object's auto-backup objects as its blueprint says."""

    name = "autobackup"

    def __init__(self, ctx: ControllerContext, targets: Mapping[str, Informer]) -> None:
        self.ctx = ctx
        self.targets = dict(targets)
        """The informers of the objects that may be annotated, by kind."""

    def add_target(self, kind: str, informer: Informer) -> None:
        """Also watch `kind` (an API found served after start-up, e.g. AppBinding)."""
        self.targets[kind] = informer

    async def reconcile(self, key: str) -> Result:
        kind, ns, name = key.split("/", 2)
        informer = self.targets.get(kind)
        obj = informer.get(f"{ns}/{name}") if informer is not None else None
        if obj is None:
            await self._gone(key, ns)
            return DONE
        if obj["metadata"].get("deletionTimestamp") or controlled_by_workload(obj):
            return DONE
        obj = _identity(kind, obj)
        plan = plan_for(self.ctx, kind, obj)
        mine = self.ctx.caches.backupconfigurations.by_index(AUTO_TARGET_INDEX, key)
        if plan is None:
            await self._removed(obj, mine)
            return DONE
        if plan.problems:
            text = "; ".join(str(p) for p in plan.problems)
            await self.ctx.recorder.warn(
                obj,
                "AutoBackupResourcesCreationFailed",
                f"nothing was created or changed: {text}",
            )
            return DONE
        written: list[str] = []
        for planned in plan.backups:
            for res, cache, body in (
                (REPOSITORIES, self.ctx.caches.repositories, planned.repository),
                (
                    BACKUPCONFIGURATIONS,
                    self.ctx.caches.backupconfigurations,
                    planned.backup_configuration,
                ),
            ):
                outcome = await self._apply(res, cache, body)
                if outcome is None:
                    return Result(requeue_after=RETRY_DELETING)
                if outcome:
                    written.append(f"{res.kind} {key_of(body)}")
        keep = {key_of(p.backup_configuration) for p in plan.backups}
        stale = [b for b in mine if key_of(b) not in keep]
        await self._delete(BACKUPCONFIGURATIONS, stale)
        if written:
            bps = ", ".join(p.blueprint for p in plan.backups)
            await self.ctx.recorder.emit(
                obj,
                NORMAL,
                "AutoBackupResourcesCreationSucceeded",
                f"created or updated {', '.join(written)} from BackupBlueprint {bps}",
            )
        return DONE

    async def _apply(self, res: Resource, cache: Informer, body: JSON) -> bool | None:
        """Apply `body` unless the cached object carries its hash; True when written,
        None when the object is being deleted (apply again once it is gone)."""
        digest = _plan_hash(body)
        cached = cache.get(key_of(body))
        if cached is not None:
            if cached["metadata"].get("deletionTimestamp"):
                return None
            if (cached["metadata"].get("annotations") or {}).get(ANN_PLAN_HASH) == digest:
                return False
        meta = body["metadata"]
        stamped = {
            **body,
            "metadata": {**meta, "annotations": {**meta["annotations"], ANN_PLAN_HASH: digest}},
        }
        await self.ctx.kube.apply(res, stamped, field_manager=FIELD_MANAGER, force=True)
        return True

    async def _delete(self, res: Resource, objs: list[JSON]) -> list[str]:
        gone = []
        for o in objs:
            meta = o["metadata"]
            with contextlib.suppress(NotFound):
                await self.ctx.kube.delete(res, meta["name"], meta["namespace"])
            gone.append(f"{res.kind} {key_of(o)}")
        return gone

    async def _removed(self, obj: JSON, mine: list[JSON]) -> None:
        """The annotation is gone: delete the BackupConfigurations, keep the Repositories."""
        if not mine:
            return
        gone = await self._delete(BACKUPCONFIGURATIONS, mine)
        kept = [
            key_of(r)
            for r in self.ctx.caches.repositories.by_index(
                AUTO_TARGET_INDEX, f"{obj['kind']}/{key_of(obj)}"
            )
        ]
        note = f"; kept Repository {', '.join(kept)} with its snapshots" if kept else ""
        await self.ctx.recorder.emit(
            obj,
            NORMAL,
            "AutoBackupResourcesDeletionSucceeded",
            f"annotation {ANN_BLUEPRINT} removed: deleted {', '.join(gone)}{note}",
        )

    async def _gone(self, key: str, namespace: str) -> None:
        """The object was deleted: delete what garbage collection cannot reach (objects
        in another namespace carry no owner reference)."""
        for res, cache in (
            (BACKUPCONFIGURATIONS, self.ctx.caches.backupconfigurations),
            (REPOSITORIES, self.ctx.caches.repositories),
        ):
            elsewhere = [
                o
                for o in cache.by_index(AUTO_TARGET_INDEX, key)
                if o["metadata"]["namespace"] != namespace
            ]
            try:
                await self._delete(res, elsewhere)
            except KubeError as exc:
                log.warning("%s: deleting its auto-backup %s failed: %s", key, res.kind, exc)
