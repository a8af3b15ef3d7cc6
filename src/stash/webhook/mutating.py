"""Mutating admission decisions: workloads, Pods (GitOps mode), RestoreSessions, BackupSessions.

What it is for: given a decoded AdmissionRequest, the settings and a `Lookup`, return the
object as admitted (`Mutation.original`) and as it should be stored (`Mutation.mutated`),
plus warnings for the user. The server turns the pair into a JSON patch.

Not for: HTTP, patches, or error handling policy (`stash.webhook.app`), and not for the
injection rules themselves (`stash.inject`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stash.api import BackupConfiguration, Repository, RestoreSession
from stash.contract.authority import Author, with_author
from stash.contract.batches import backup_members, restore_members
from stash.contract.workloads import WORKLOAD_KINDS
from stash.inject import (
    ANN_BACKUP_INVOKER,
    ANN_RESTORE_INVOKER,
    auto_backup_invoker,
    choose_backup_invoker,
    desired_workload,
    repository_key,
    select_backup_invoker,
    select_restore_invoker,
)
from stash.settings import OperatorSettings
from stash.webhook.autobackup import auto_backup_plan
from stash.webhook.defaults import default_backup_session_labels, migrate_restore_rules
from stash.webhook.lookup import Lookup
from stash.webhook.review import AdmissionRequest

__all__ = [
    "Mutation",
    "mutate_backup_session",
    "mutate_invoker",
    "mutate_pod",
    "mutate_restore_session",
    "mutate_workload",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class Mutation:
    """The object as admitted and as it should be stored (equal when nothing changes)."""

    original: JSON
    mutated: JSON
    warnings: tuple[str, ...] = ()


def _with_identity(req: AdmissionRequest) -> JSON:
    """The request object with kind/apiVersion/namespace filled in from the request."""
    obj = dict(req.object or {})
    obj.setdefault("kind", req.kind.kind)
    group, version = req.kind.group, req.kind.version
    obj.setdefault("apiVersion", f"{group}/{version}" if group else version)
    meta = obj.get("metadata")
    if isinstance(meta, dict) and req.namespace and not meta.get("namespace"):
        obj["metadata"] = {**meta, "namespace": req.namespace}
    return obj


def _unchanged(obj: JSON, *warnings: str) -> Mutation:
    return Mutation(obj, obj, tuple(warnings))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _controller_ref(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def _controller(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    ref = _controller_ref(meta)
    return (str(ref.get("kind", "")), str(ref.get("name", ""))) if ref else None


async def _is_current(req: AdmissionRequest, lookup: Lookup, kind: str, name: str) -> bool:
    """Whether a workload request can be the apiserver's: a CREATE of an object that does
    not exist, an UPDATE of the object that does (same uid). Anyone who can reach the
    webhook may post a review; they get no patch (which carries the invoker's settings)
    for an object whose uid they could not read."""
    uid = await lookup.uid_of(req.namespace, kind, name)
    if req.operation == "CREATE":
        return uid is None
    return uid is not None and uid == _meta(req.old_object or {}).get("uid")


async def _labels_if_needed(
    lookup: Lookup, namespace: str, *invokers: BackupConfiguration | RestoreSession | None
) -> Mapping[str, str] | None:
    """The namespace's labels when an invoker uses a Repository of another namespace."""
    keys = [repository_key(i) for i in invokers if i is not None]
    if all(not k or k.partition("/")[0] == namespace for k in keys):
        return None
    return await lookup.namespace_labels(namespace)


def _was_injected(meta: Mapping[str, Any]) -> bool:
    anns = meta.get("annotations")
    return isinstance(anns, dict) and (ANN_BACKUP_INVOKER in anns or ANN_RESTORE_INVOKER in anns)


async def _repositories(
    lookup: Lookup, *invokers: BackupConfiguration | RestoreSession | None
) -> dict[str, Repository]:
    keys = {k for k in (repository_key(i) for i in invokers if i is not None) if k}
    found: dict[str, Repository] = {}
    for key in sorted(keys):
        namespace, name = key.split("/", 1)
        repo = await lookup.repository(namespace, name)
        if repo is not None:
            found[key] = repo
    return found


async def _invokers(
    lookup: Lookup, namespace: str, candidates: list[tuple[str, str]]
) -> tuple[BackupConfiguration | None, RestoreSession | None]:
    """The backup and restore invokers of the first candidate (kind, name) that has any."""
    backups, restores = await asyncio.gather(
        lookup.backup_configurations(namespace), lookup.restore_sessions(namespace)
    )
    for kind, name in candidates:
        bc = select_backup_invoker(backups, kind, namespace, name)
        rs = select_restore_invoker(restores, kind, namespace, name)
        if bc is not None or rs is not None:
            return bc, rs
    return None, None


async def mutate_workload(
    req: AdmissionRequest, settings: OperatorSettings, lookup: Lookup
) -> Mutation:
    """Inject (or remove) the agent in a workload's pod template (§4.1)."""
    obj = _with_identity(req)
    meta = _meta(obj)
    kind, namespace = obj.get("kind"), req.namespace or str(meta.get("namespace") or "")
    name = str(meta.get("name") or req.name)
    if req.operation not in ("CREATE", "UPDATE") or kind not in WORKLOAD_KINDS or not name:
        return _unchanged(obj)
    if meta.get("deletionTimestamp"):
        return _unchanged(obj)
    owner = _controller(meta)
    if owner is not None and owner[0] in WORKLOAD_KINDS:
        return _unchanged(obj)  # e.g. a Deployment's ReplicaSet: its template came injected
    if settings.injection_mode == "pod" and not _was_injected(meta):
        return _unchanged(obj)
    backups, restores, backup_batches, restore_batches = await asyncio.gather(
        lookup.backup_configurations(namespace),
        lookup.restore_sessions(namespace),
        lookup.backup_batches(namespace),
        lookup.restore_batches(namespace),
    )
    members = [m for b in backup_batches for m in backup_members(b)]
    restore_views = [m for b in restore_batches for m in restore_members(b)]
    # Auto-backup: inject for the BackupConfiguration the annotations resolve to, before
    # the operator creates it (stash.contract.blueprint), so one admission is one rollout.
    plan = await auto_backup_plan(obj, str(kind), lookup, backups)
    planned = plan.invoker() if plan is not None else None
    auto = auto_backup_invoker(planned, plan is not None, backups, str(kind), namespace, name)
    bc = choose_backup_invoker([*backups, *members], auto, str(kind), namespace, name)
    rs = select_restore_invoker([*restores, *restore_views], str(kind), namespace, name)
    notes = tuple(f"stash: auto-backup: {p}" for p in (plan.problems if plan else ()))
    if bc is None and rs is None and not _was_injected(meta):
        return _unchanged(obj, *notes)
    if not await _is_current(req, lookup, str(kind), name):
        return _unchanged(obj)
    repos = {**(plan.repositories() if plan else {}), **await _repositories(lookup, bc, rs)}
    labels = await _labels_if_needed(lookup, namespace, bc, rs)
    desired = desired_workload(obj, bc, rs, settings, repos, labels)
    warnings = (*notes, *(f"stash: {p}" for p in desired.problems))
    return Mutation(obj, desired.workload, warnings)


async def mutate_pod(req: AdmissionRequest, settings: OperatorSettings, lookup: Lookup) -> Mutation:
    """GitOps `pod` mode: inject the agent into a Pod whose controller chain leads to a
    targeted workload, leaving the workload's template as its owner wrote it."""
    obj = _with_identity(req)
    if settings.injection_mode != "pod" or req.operation != "CREATE" or obj.get("kind") != "Pod":
        return _unchanged(obj)
    namespace = req.namespace or str(_meta(obj).get("namespace") or "")
    ref = _controller_ref(_meta(obj))
    if ref is None:
        return _unchanged(obj)
    owner = (str(ref.get("kind", "")), str(ref.get("name", "")))
    candidates = [owner]
    if owner[0] in ("ReplicaSet", "ReplicationController"):
        parent = await lookup.controller_of(namespace, *owner)
        if parent is not None:
            candidates.insert(0, parent)
    bc, rs = await _invokers(lookup, namespace, candidates)
    if bc is None and rs is None:
        return _unchanged(obj)
    # The Pod's controller must be the one that exists (its uid cannot be guessed).
    if not ref.get("uid") or await lookup.uid_of(namespace, *owner) != ref.get("uid"):
        return _unchanged(obj)
    repos = await _repositories(lookup, bc, rs)
    labels = await _labels_if_needed(lookup, namespace, bc, rs)
    desired = desired_workload(obj, bc, rs, settings, repos, labels)
    return Mutation(obj, desired.workload, tuple(f"stash: {p}" for p in desired.problems))


def mutate_invoker(req: AdmissionRequest) -> Mutation:
    """Record who changed what the operator acts on (`stash.contract.authority`) on a
    BackupConfiguration, RestoreSession or batch."""
    obj = _with_identity(req)
    if req.operation not in ("CREATE", "UPDATE"):
        return _unchanged(obj)
    return Mutation(obj, with_author(obj, req.old_object, Author.from_user_info(req.user_info)))


def mutate_restore_session(req: AdmissionRequest) -> Mutation:
    """Move deprecated `spec.rules` into `spec.target.rules` (§1.5), and record the author."""
    recorded = mutate_invoker(req)
    if req.operation not in ("CREATE", "UPDATE"):
        return recorded
    return Mutation(recorded.original, migrate_restore_rules(recorded.mutated))


async def mutate_backup_session(req: AdmissionRequest, lookup: Lookup) -> Mutation:
    """Default a BackupSession's invoker and target labels from `spec.invoker` (§5.3)."""
    obj = _with_identity(req)
    if req.operation != "CREATE":
        return _unchanged(obj)
    spec = obj.get("spec")
    ref = spec.get("invoker") if isinstance(spec, dict) else None
    if not isinstance(ref, dict):
        return _unchanged(obj)
    namespace = req.namespace or str(_meta(obj).get("namespace") or "")
    warnings: tuple[str, ...] = ()
    try:
        invoker = await lookup.backup_invoker(
            namespace, str(ref.get("kind", "")), str(ref.get("name", ""))
        )
    except Exception as exc:  # the invoker labels alone still let sidecars find the session
        invoker = None
        warnings = (f"stash: could not read the invoker to add target labels: {exc}",)
    return Mutation(obj, default_backup_session_labels(obj, invoker), warnings)
