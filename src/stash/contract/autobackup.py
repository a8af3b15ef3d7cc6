"""Auto-backup's inputs and names (stash-api.md §3.1, §3.2): annotations, variables, names.

What it is for: the rules the webhook (injecting in the admission) and the operator
(creating the objects, repairing the injection) must read alike, so that both arrive
at the same BackupConfiguration for the same annotated object:

* `Target` — the facts of an annotated object (kind, name, annotations, its pods'
  volume names) and `parse_annotations()`, which reads `backup-blueprint`,
  `target-paths`, `volume-mounts`, `schedule` and `params.stash.appscode.com/*` into a
  `Request`, or says what is wrong (a `Problem` naming the annotation and the fix);
* `target_variables()` / `expand()` — `${TARGET_*}` substitution (§3.2 table);
* `object_name()` / `legacy_names()` — `<kind>-<name>` (older `deploy-<name>` names are
  adopted when they exist) and `owner_id()`, which tells whose an existing object is.

Not for: turning a blueprint into objects (`stash.contract.blueprint`) or any I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stash.api.common import Param
from stash.api.k8s import VolumeMount
from stash.contract.resources import TARGET_KINDS
from stash.cron import CronError, parse_schedule

__all__ = [
    "ANN_AUTO_TARGET",
    "ANN_BLUEPRINT",
    "ANN_FROM_BLUEPRINT",
    "ANN_SCHEDULE",
    "ANN_TARGET_PATHS",
    "ANN_VOLUME_MOUNTS",
    "AUTO_BACKUP_KINDS",
    "LABEL_AUTO_BACKUP",
    "PARAMS_PREFIX",
    "TARGET_VARIABLES",
    "Problem",
    "Request",
    "Target",
    "blueprint_names",
    "expand",
    "legacy_names",
    "object_name",
    "owner_id",
    "parse_annotations",
    "target_variables",
    "wants_auto_backup",
]

_PREFIX = "stash.appscode.com/"
ANN_BLUEPRINT = _PREFIX + "backup-blueprint"
ANN_SCHEDULE = _PREFIX + "schedule"
ANN_TARGET_PATHS = _PREFIX + "target-paths"
ANN_VOLUME_MOUNTS = _PREFIX + "volume-mounts"
PARAMS_PREFIX = "params.stash.appscode.com/"

LABEL_AUTO_BACKUP = _PREFIX + "auto-backup"
"""Label (`"true"`) on every Repository and BackupConfiguration auto-backup made."""
ANN_AUTO_TARGET = _PREFIX + "auto-backup-target"
"""Annotation on them: `<Kind>/<namespace>/<name>` of the object they back up."""
ANN_FROM_BLUEPRINT = _PREFIX + "from-blueprint"
"""Annotation on them: the BackupBlueprint they were made from."""

#: Kinds auto-backup reads annotations from (DeploymentConfig exists only on OpenShift).
AUTO_BACKUP_KINDS = (
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "PersistentVolumeClaim",
    "AppBinding",
)
_JOB_KINDS = frozenset({"PersistentVolumeClaim", "AppBinding"})
_SHORT = {
    "Deployment": "deploy",
    "StatefulSet": "sts",
    "DaemonSet": "ds",
    "ReplicaSet": "rs",
    "ReplicationController": "rc",
    "PersistentVolumeClaim": "pvc",
    "AppBinding": "app",
}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}")
MAX_NAME = 63

#: The variables of §3.2; they belong to blueprint resolution (never left for later).
TARGET_VARIABLES = (
    "TARGET_API_VERSION",
    "TARGET_KIND",
    "TARGET_NAME",
    "TARGET_NAMESPACE",
    "TARGET_RESOURCE",
    "TARGET_APP_VERSION",
    "TARGET_APP_TYPE",
    "TARGET_APP_GROUP",
    "TARGET_APP_RESOURCE",
)


@dataclass(frozen=True)
class Problem:
    """One bad input: where (an annotation, or a blueprint's field) and what to fix."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Target:
    """The facts of an object that may carry auto-backup annotations."""

    kind: str
    namespace: str
    name: str
    uid: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    volumes: frozenset[str] | None = None
    """Volume names its pods have (workloads; a StatefulSet's claim templates count)."""
    app_type: str = ""
    """AppBinding `spec.type`, e.g. `kubedb.com/postgres`."""
    app_version: str = ""
    """AppBinding `spec.version`."""

    @property
    def id(self) -> str:
        """`<Kind>/<namespace>/<name>`: what `ANN_AUTO_TARGET` records."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def api_version(self) -> str:
        """The apiVersion a `target.ref` names it with."""
        return TARGET_KINDS[self.kind].api_version

    @property
    def is_workload(self) -> bool:
        """A workload (its pods get the sidecar), not a PVC or an AppBinding."""
        return self.kind not in _JOB_KINDS

    @classmethod
    def of(cls, kind: str, obj: Mapping[str, Any], volumes: frozenset[str] | None = None) -> Target:
        """The facts of a stored object of `kind` (`volumes` from the caller)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        app = kind == "AppBinding"
        return cls(
            kind=kind,
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            annotations=dict(meta.get("annotations") or {}),
            volumes=volumes,
            app_type=str(spec.get("type") or "") if app else "",
            app_version=str(spec.get("version") or "") if app else "",
        )


@dataclass(frozen=True)
class Request:
    """What a target's annotations ask for."""

    blueprints: tuple[str, ...]
    schedule: str | None = None
    paths: tuple[str, ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    params: tuple[Param, ...] = ()


def wants_auto_backup(annotations: Mapping[str, str] | None) -> bool:
    """Whether the object names a blueprint (even a malformed one: that is reported)."""
    return ANN_BLUEPRINT in (annotations or {})


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def blueprint_names(annotations: Mapping[str, str] | None) -> tuple[str, ...]:
    """The BackupBlueprint names the annotation lists (in order, each once)."""
    return tuple(dict.fromkeys(_split((annotations or {}).get(ANN_BLUEPRINT, ""))))


def _blueprints(text: str, target: Target, problems: list[Problem]) -> tuple[str, ...]:
    names = list(blueprint_names({ANN_BLUEPRINT: text}))
    if not names:
        problems.append(Problem(ANN_BLUEPRINT, "is empty; name a BackupBlueprint"))
    for name in names:
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            problems.append(
                Problem(ANN_BLUEPRINT, f'"{name}" is not a BackupBlueprint name (a DNS name)')
            )
    if len(names) > 1 and target.is_workload:
        problems.append(
            Problem(
                ANN_BLUEPRINT,
                f"lists {len(names)} blueprints ({', '.join(names)}); a {target.kind}'s pods "
                "carry one backup sidecar, so a workload takes one blueprint (a comma list "
                "is for PersistentVolumeClaims and AppBindings)",
            )
        )
    return tuple(names)


def _mounts(text: str, problems: list[Problem]) -> tuple[VolumeMount, ...]:
    out: list[VolumeMount] = []
    seen: set[str] = set()
    for entry in _split(text):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            problems.append(
                Problem(
                    ANN_VOLUME_MOUNTS,
                    f'entry "{entry}" is not name:mountPath[:subPath] (e.g. data:/var/data)',
                )
            )
            continue
        name, path = parts[0], parts[1]
        sub = parts[2] if len(parts) == 3 else None
        if len(name) > 63 or not _DNS_LABEL.match(name):
            problems.append(
                Problem(ANN_VOLUME_MOUNTS, f'entry "{entry}": "{name}" is not a volume name')
            )
        elif not path.startswith("/"):
            problems.append(
                Problem(ANN_VOLUME_MOUNTS, f'entry "{entry}": mountPath "{path}" is not absolute')
            )
        elif sub is not None and (not sub or sub.startswith("/") or ".." in sub.split("/")):
            problems.append(
                Problem(
                    ANN_VOLUME_MOUNTS,
                    f'entry "{entry}": subPath "{sub}" must be a relative path without ".."',
                )
            )
        elif path in seen:
            problems.append(
                Problem(ANN_VOLUME_MOUNTS, f'mountPath "{path}" appears twice; use one entry')
            )
        else:
            seen.add(path)
            out.append(VolumeMount(name=name, mount_path=path, sub_path=sub))
    if not out and not any(p.where == ANN_VOLUME_MOUNTS for p in problems):
        problems.append(Problem(ANN_VOLUME_MOUNTS, "is empty; give name:mountPath[:subPath]"))
    return tuple(out)


def _paths(text: str, problems: list[Problem]) -> tuple[str, ...]:
    paths = list(dict.fromkeys(_split(text)))
    if not paths:
        problems.append(Problem(ANN_TARGET_PATHS, "is empty; give the directories to back up"))
    for path in paths:
        if not path.startswith("/"):
            problems.append(Problem(ANN_TARGET_PATHS, f'"{path}" is not an absolute path'))
    return tuple(paths)


def _workload_checks(
    target: Target, paths: tuple[str, ...], mounts: tuple[VolumeMount, ...]
) -> list[Problem]:
    """Mounts name volumes the pods have; every path lies under a mount."""
    problems: list[Problem] = []
    have = target.volumes or frozenset()
    for m in mounts:
        if m.name not in have:
            listed = ", ".join(sorted(have)) or "none"
            extra = " or volumeClaimTemplates" if target.kind == "StatefulSet" else ""
            problems.append(
                Problem(
                    ANN_VOLUME_MOUNTS,
                    f'volume "{m.name}" is not in the {target.kind}\'s pod template{extra} '
                    f"(its volumes: {listed}); name one of them",
                )
            )
    roots = [m.mount_path.rstrip("/") or "/" for m in mounts]
    for path in paths:
        if mounts and not any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots):
            problems.append(
                Problem(
                    ANN_TARGET_PATHS,
                    f'"{path}" is under none of the mounts of {ANN_VOLUME_MOUNTS} '
                    f"({', '.join(roots)}); the sidecar sees only those",
                )
            )
    return problems


def parse_annotations(target: Target) -> Request | list[Problem]:
    """What `target`'s annotations ask for, or every problem with them (§3.1).

    A workload needs `backup-blueprint`, `target-paths` and `volume-mounts`, and its
    mounts must name volumes its pods have; a PVC or an AppBinding needs only the
    blueprint (paths and mounts are optional there; an AppBinding ignores them).
    """
    ann = target.annotations
    problems: list[Problem] = []
    blueprints = _blueprints(ann.get(ANN_BLUEPRINT, ""), target, problems)
    paths: tuple[str, ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    if target.kind != "AppBinding":
        for key in (ANN_TARGET_PATHS, ANN_VOLUME_MOUNTS):
            if target.is_workload and key not in ann:
                problems.append(
                    Problem(key, f"is required on a {target.kind} with {ANN_BLUEPRINT}")
                )
        if ANN_TARGET_PATHS in ann:
            paths = _paths(ann[ANN_TARGET_PATHS], problems)
        if ANN_VOLUME_MOUNTS in ann:
            mounts = _mounts(ann[ANN_VOLUME_MOUNTS], problems)
        if target.is_workload and not problems:
            problems.extend(_workload_checks(target, paths, mounts))
    schedule = ann.get(ANN_SCHEDULE)
    if schedule is not None:
        try:
            parse_schedule(schedule)
        except CronError as exc:
            problems.append(Problem(ANN_SCHEDULE, str(exc)))
    params = tuple(
        Param(name=key[len(PARAMS_PREFIX) :], value=value)
        for key, value in sorted(ann.items())
        if key.startswith(PARAMS_PREFIX) and key[len(PARAMS_PREFIX) :]
    )
    if problems:
        return problems
    return Request(blueprints, schedule, paths, mounts, params)


# ------------------------------------------------------------------ variables


def target_variables(target: Target) -> dict[str, str]:
    """The §3.2 variables that have a value for `target` (TARGET_APP_* for AppBindings)."""
    out = {
        "TARGET_API_VERSION": target.api_version,
        "TARGET_KIND": target.kind.lower(),
        "TARGET_NAME": target.name,
        "TARGET_NAMESPACE": target.namespace,
        "TARGET_RESOURCE": TARGET_KINDS[target.kind].plural,
    }
    if target.kind == "AppBinding":
        group, _, resource = target.app_type.rpartition("/")
        app = {
            "TARGET_APP_VERSION": target.app_version,
            "TARGET_APP_TYPE": target.app_type,
            "TARGET_APP_GROUP": group,
            "TARGET_APP_RESOURCE": resource,
        }
        out.update({k: v for k, v in app.items() if v})
    return out


def _why_unset(name: str, target: Target) -> str:
    if name.startswith("TARGET_APP_"):
        if target.kind != "AppBinding":
            return f"${{{name}}} has no value for a {target.kind}: only AppBinding targets have it"
        return f"${{{name}}} has no value: the AppBinding's spec.type or spec.version is empty"
    known = ", ".join(f"${{{v}}}" for v in TARGET_VARIABLES)
    return f"${{{name}}} is not a blueprint variable (known: {known})"


def expand(
    value: Any, variables: Mapping[str, str], where: str, target: Target, *, strict: bool
) -> tuple[Any, list[Problem]]:
    """`value` with `${VAR}` / `${VAR:=default}` substituted in every string.

    A §3.2 variable without a value (and without a default) is a problem anywhere.
    Other variables are problems when `strict` (backend, schedule: nothing expands them
    later) and are otherwise left as written, for the Job builder's §5.5 inputs.
    """
    problems: list[Problem] = []

    def walk(v: Any, path: str) -> Any:
        if isinstance(v, str):

            def one(m: re.Match[str]) -> str:
                name, default = m.group(1), m.group(2)
                if variables.get(name):
                    return variables[name]
                if default is not None:
                    return default
                if strict or name in TARGET_VARIABLES:
                    problems.append(Problem(path, _why_unset(name, target)))
                return m.group(0)

            return _VAR.sub(one, v)
        if isinstance(v, list):
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            return {k: walk(x, f"{path}.{k}") for k, x in v.items()}
        return v

    return walk(value, where), problems


# ------------------------------------------------------------------ names


def _fit(name: str) -> str:
    """At most 63 characters: a longer name keeps 54 and adds 8 hex of its SHA-256, so
    two long names that share a beginning never become one object."""
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-.')}-{digest}"


def _base(prefix: str, target: Target, namespace: str, blueprint: str | None) -> str:
    name = f"{prefix}-{target.name}"
    if namespace != target.namespace:
        name = f"{target.namespace}-{name}"
    return f"{name}-{blueprint}" if blueprint else name


def object_name(target: Target, namespace: str, blueprint: str | None = None) -> str:
    """§3.2 name of the Repository / BackupConfiguration made for `target` in `namespace`:
    `<lower(kind)>-<name>` (AppBinding: `app-<name>`), prefixed with the target's
    namespace when the object lives elsewhere, suffixed `-<blueprint>` when the
    annotation lists several blueprints."""
    prefix = "app" if target.kind == "AppBinding" else target.kind.lower()
    return _fit(_base(prefix, target, namespace, blueprint))


def legacy_names(target: Target, namespace: str, blueprint: str | None = None) -> list[str]:
    """Older spellings of `object_name` that are adopted when they exist: v0.9's short
    kinds (`deploy-`, `sts-`, `pvc-`, ...) and upstream's plain cut at 63 characters."""
    current = object_name(target, namespace, blueprint)
    prefix = "app" if target.kind == "AppBinding" else target.kind.lower()
    names = [
        _fit(_base(_SHORT[target.kind], target, namespace, blueprint)),
        _base(prefix, target, namespace, blueprint)[:MAX_NAME].rstrip("-."),
    ]
    return [n for n in dict.fromkeys(names) if n != current]


def owner_id(obj: Mapping[str, Any]) -> str:
    """Whose an existing object is: `ANN_AUTO_TARGET`, else `<Kind>/<ns>/<name>` of an
    owner reference to an auto-backup kind (upstream's objects), else "" (hand-written)."""
    meta = obj.get("metadata") or {}
    recorded = (meta.get("annotations") or {}).get(ANN_AUTO_TARGET)
    if recorded:
        return str(recorded)
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("kind") in AUTO_BACKUP_KINDS:
            return f"{ref['kind']}/{meta.get('namespace') or ''}/{ref.get('name')}"
    return ""
