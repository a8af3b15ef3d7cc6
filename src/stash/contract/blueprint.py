"""Blueprint resolution (stash-api.md §3.2): an annotated object + its BackupBlueprints ->
the Repository and BackupConfiguration that back it up, or what is wrong.

What it is for: `resolve()`, the one pure function the webhook (to inject the sidecar in
the same admission) and the operator (to create the objects and repair injection) call,
so both produce the same BackupConfiguration, byte for byte: the injected sidecar's
hash and last-applied record match the object the operator then creates, and no second
rollout happens. It reads the annotations (`autobackup.parse_annotations`), expands the
`${TARGET_*}` variables, names the objects (adopting older names that exist and belong
to the target), and refuses — with every problem, and nothing planned — an unknown
blueprint, an unexpandable variable, a blueprint without what a BackupConfiguration
needs, two blueprints resolving to the same backend location, or a name taken by
someone else's object.

Not for: validation of the resulting objects (`stash.validation`), or creating them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stash.api import GROUP, BackupBlueprint, BackupConfiguration, Repository
from stash.api.blueprint import BackupBlueprintSpec
from stash.api.common import Param
from stash.contract.autobackup import (
    ANN_AUTO_TARGET,
    ANN_FROM_BLUEPRINT,
    ANN_SCHEDULE,
    LABEL_AUTO_BACKUP,
    Problem,
    Request,
    Target,
    expand,
    legacy_names,
    object_name,
    parse_annotations,
    target_variables,
)
from stash.contract.sessions import LABEL_MANAGED_BY

__all__ = ["Existing", "Plan", "PlannedBackup", "candidate_names", "resolve"]

JSON = dict[str, Any]

Existing = Mapping[tuple[str, str, str], str]
"""(kind, namespace, name) -> `owner_id` of an object that exists with that name ("" for
a hand-written one). Only the names `candidate_names` lists need to be present."""


@dataclass(frozen=True)
class PlannedBackup:
    """The objects one blueprint makes for the target (full objects, ready to apply)."""

    blueprint: str
    repository: JSON
    backup_configuration: JSON


@dataclass(frozen=True)
class Plan:
    """The outcome of `resolve`: what to make, or why nothing is made."""

    target: Target
    backups: tuple[PlannedBackup, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there is something to make and nothing wrong."""
        return bool(self.backups) and not self.problems

    def invoker(self) -> BackupConfiguration | None:
        """The (first) planned BackupConfiguration, parsed; None unless the plan is ok.
        A workload has one (it takes one blueprint): the sidecar is injected for it."""
        if not self.ok:
            return None
        return BackupConfiguration.model_validate(self.backups[0].backup_configuration)

    def repositories(self) -> dict[str, Repository]:
        """The planned Repositories by `namespace/name`: what injection needs to know of a
        Repository that may not exist yet (a local backend's volume)."""
        if not self.ok:
            return {}
        out: dict[str, Repository] = {}
        for p in self.backups:
            meta = p.repository["metadata"]
            out[f"{meta['namespace']}/{meta['name']}"] = Repository.model_validate(p.repository)
        return out


def _namespaces(spec: BackupBlueprintSpec, target: Target) -> tuple[str, str]:
    """(Repository namespace, BackupConfiguration namespace): repoNamespace, else
    backupNamespace, else the target's; and backupNamespace, else the target's."""
    backup_ns = spec.backup_namespace or target.namespace
    return spec.repo_namespace or backup_ns, backup_ns


def candidate_names(
    target: Target, blueprints: tuple[str, ...], specs: Mapping[str, BackupBlueprint | None]
) -> list[tuple[str, str, str]]:
    """Every (kind, namespace, name) `resolve` may look up in `Existing`."""
    out: list[tuple[str, str, str]] = []
    for name in blueprints:
        bp = specs.get(name)
        spec = bp.spec if bp and bp.spec else BackupBlueprintSpec()
        suffix = name if len(blueprints) > 1 else None
        repo_ns, bc_ns = _namespaces(spec, target)
        for kind, ns in (("Repository", repo_ns), ("BackupConfiguration", bc_ns)):
            for n in [object_name(target, ns, suffix), *legacy_names(target, ns, suffix)]:
                out.append((kind, ns, n))
    return out


def _name(
    kind: str, target: Target, ns: str, suffix: str | None, existing: Existing
) -> tuple[str, Problem | None]:
    """The current name, or an older one this target already owns; a problem when the
    current name is someone else's."""
    for old in legacy_names(target, ns, suffix):
        if existing.get((kind, ns, old)) == target.id:
            return old, None
    name = object_name(target, ns, suffix)
    owner = existing.get((kind, ns, name))
    if owner is None or owner == target.id:
        return name, None
    who = f"the auto-backup of {owner}" if owner else "a hand-written object"
    return name, Problem(
        "stash.appscode.com/backup-blueprint",
        f"{kind} {ns}/{name} already exists and is {who}; auto-backup does not take it over "
        "(rename or delete it, or set the blueprint's backupNamespace/repoNamespace)",
    )


def _meta(name: str, ns: str, target: Target, blueprint: str) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": ns,
        "labels": {LABEL_MANAGED_BY: GROUP, LABEL_AUTO_BACKUP: "true"},
        "annotations": {ANN_AUTO_TARGET: target.id, ANN_FROM_BLUEPRINT: blueprint},
    }
    if ns == target.namespace and target.uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": target.api_version,
                "kind": target.kind,
                "name": target.name,
                "uid": target.uid,
            }
        ]
    return meta


def _task(spec: JSON, request: Request) -> JSON | None:
    task = spec.get("task")
    if not task and not request.params:
        return None
    params: dict[str, str] = {p["name"]: p["value"] for p in (task or {}).get("params") or []}
    params.update({p.name: p.value for p in request.params})
    out: JSON = {"name": (task or {}).get("name", "")}
    if params:
        out["params"] = [Param(name=k, value=v).to_wire() for k, v in params.items()]
    return out


def _missing(spec: JSON, target: Target, where: str) -> list[Problem]:
    """What the blueprint lacks for a BackupConfiguration of this target."""
    out = []
    if not spec.get("backend"):
        out.append(Problem(f"{where}.backend", "required: where the Repository is stored"))
    if not spec.get("retentionPolicy"):
        out.append(Problem(f"{where}.retentionPolicy", "required: a BackupConfiguration needs one"))
    if target.kind == "AppBinding" and not (spec.get("task") or {}).get("name"):
        out.append(
            Problem(
                f"{where}.task.name",
                "required for an AppBinding (e.g. postgres-backup-${TARGET_APP_VERSION})",
            )
        )
    if target.is_workload and spec.get("backupNamespace") not in (None, target.namespace):
        out.append(
            Problem(
                f"{where}.backupNamespace",
                f"a {target.kind}'s BackupConfiguration must be in its namespace "
                f"{target.namespace} (its sidecar reads it); only AppBindings may use another",
            )
        )
    return out


def _plan_one(
    target: Target, request: Request, bp: BackupBlueprint, existing: Existing
) -> PlannedBackup | list[Problem]:
    """The objects of one blueprint (module docstring)."""
    name = str(bp.metadata.name)
    where = f"BackupBlueprint {name} spec"
    raw = bp.spec.to_wire() if bp.spec else {}
    problems = _missing(raw, target, where)
    variables = target_variables(target)
    backend, found = expand(raw.get("backend"), variables, f"{where}.backend", target, strict=True)
    problems += found
    schedule_where = ANN_SCHEDULE if request.schedule is not None else f"{where}.schedule"
    schedule, found = expand(
        request.schedule if request.schedule is not None else raw.get("schedule"),
        variables,
        schedule_where,
        target,
        strict=True,
    )
    problems += found
    if not schedule:
        problems.append(
            Problem(f"{where}.schedule", f"no schedule: set it here or annotate {ANN_SCHEDULE}")
        )
    rest = {k: v for k, v in raw.items() if k not in ("backend", "schedule")}
    rest, found = expand(rest, variables, where, target, strict=False)
    problems += found
    suffix = name if len(request.blueprints) > 1 else None
    spec = BackupBlueprintSpec.model_validate(raw)
    repo_ns, bc_ns = _namespaces(spec, target)
    repo_name, clash = _name("Repository", target, repo_ns, suffix, existing)
    problems += [clash] if clash else []
    bc_name, clash = _name("BackupConfiguration", target, bc_ns, suffix, existing)
    problems += [clash] if clash else []
    if problems:
        return problems
    repo_spec: JSON = {"backend": backend}
    for key in ("wipeOut", "usagePolicy"):
        if key in rest:
            repo_spec[key] = rest[key]
    repository: JSON = {"name": repo_name}
    if repo_ns != bc_ns:
        repository["namespace"] = repo_ns
    bc_spec = _bc_spec(target, request, rest, bc_ns, repository, str(schedule))
    return PlannedBackup(
        blueprint=name,
        repository={
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "Repository",
            "metadata": _meta(repo_name, repo_ns, target, name),
            "spec": repo_spec,
        },
        backup_configuration={
            "apiVersion": f"{GROUP}/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": _meta(bc_name, bc_ns, target, name),
            "spec": _with_defaults(bc_spec),
        },
    )


_FROM_BLUEPRINT = (
    "retentionPolicy",
    "runtimeSettings",
    "tempDir",
    "interimVolumeTemplate",
    "backupHistoryLimit",
    "hooks",
    "timeOut",
    "retryConfig",
)


def _bc_spec(
    target: Target, request: Request, rest: JSON, bc_ns: str, repository: JSON, schedule: str
) -> JSON:
    """The BackupConfiguration spec: the target from the annotations, the rest (expanded)
    from the blueprint."""
    ref: JSON = {"apiVersion": target.api_version, "kind": target.kind, "name": target.name}
    if bc_ns != target.namespace:
        ref["namespace"] = target.namespace
    bc_target: JSON = {"ref": ref}
    if request.paths:
        bc_target["paths"] = list(request.paths)
    if request.mounts:
        bc_target["volumeMounts"] = [m.to_wire() for m in request.mounts]
    spec: JSON = {
        "driver": "Restic",
        "repository": repository,
        "schedule": schedule,
        "target": bc_target,
    }
    task = _task(rest, request)
    if task is not None:
        spec["task"] = task
    spec.update({key: rest[key] for key in _FROM_BLUEPRINT if key in rest})
    return spec


def _with_defaults(spec: JSON) -> JSON:
    """The spec as the apiserver stores it (the CRD's defaults written out), so the
    webhook's injection and the stored object hash alike."""
    post = ((spec.get("hooks") or {}).get("postBackup")) if spec.get("hooks") else None
    if isinstance(post, dict) and "executionPolicy" not in post:
        post["executionPolicy"] = "Always"
    return spec


def _location(backend: JSON) -> str:
    """A backend without its secret: two equal locations are one restic repository."""
    return repr(sorted((k, repr(v)) for k, v in backend.items() if k != "storageSecretName"))


def resolve(
    target: Target,
    blueprints: Mapping[str, BackupBlueprint | None],
    existing: Existing,
) -> Plan:
    """What auto-backup makes for `target` (module docstring).

    `blueprints` maps each name the annotation lists to the BackupBlueprint (None: it
    does not exist); `existing` says who owns the names the plan may take.
    """
    parsed = parse_annotations(target)
    if isinstance(parsed, list):
        return Plan(target, problems=tuple(parsed))
    problems: list[Problem] = []
    planned: list[PlannedBackup] = []
    for name in parsed.blueprints:
        bp = blueprints.get(name)
        if bp is None:
            problems.append(
                Problem(
                    "stash.appscode.com/backup-blueprint",
                    f'BackupBlueprint "{name}" does not exist; create it or fix the name',
                )
            )
            continue
        one = _plan_one(target, parsed, bp, existing)
        if isinstance(one, list):
            problems.extend(one)
        else:
            planned.append(one)
    seen: dict[str, str] = {}
    for p in planned:
        where = _location(p.repository["spec"]["backend"])
        if where in seen:
            problems.append(
                Problem(
                    "stash.appscode.com/backup-blueprint",
                    f"blueprints {seen[where]} and {p.blueprint} resolve to the same backend "
                    "location, so their snapshots and retention would mix in one repository; "
                    "give one a different bucket or prefix",
                )
            )
        seen.setdefault(where, p.blueprint)
    if problems:
        return Plan(target, problems=tuple(problems))
    return Plan(target, backups=tuple(planned))
