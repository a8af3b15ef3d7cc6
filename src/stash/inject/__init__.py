"""Pure injection of the Stash agent into workloads (stash-api.md §4.1-§4.3).

What it is for: given a workload object (Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, DeploymentConfig — or a Pod in the GitOps `pod` injection mode),
the invoker that targets it, the operator settings and the invoker's Repository, compute
the new object: the `stash` backup sidecar, the `stash-init` restore init-container
(prepended), their volumes, annotations and image pull secrets — and the reverse. Every
function returns a new dict and never changes its input; injecting into an injected
object returns an equal object, so the webhook's JSON patch is empty and no rollout
happens. `desired_workload` is the one entry point the webhook and the workload
reconciler share.

Not for: finding the invoker or the Repository (I/O: the webhook's lookup or the
operator's caches), computing JSON patches (the webhook diffs original and result), RBAC
for the agent, or deciding whether an invoker is valid (`stash.validation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stash.api import BackupConfiguration, Repository, RestoreSession
from stash.contract.names import (
    ANN_BACKUP_HASH,
    ANN_BACKUP_INVOKER,
    ANN_BACKUP_INVOKER_KIND,
    ANN_PULL_SECRETS,
    ANN_RESTORE_HASH,
    ANN_RESTORE_INVOKER,
    ANN_RESTORE_INVOKER_KIND,
    INIT_CONTAINER,
    LOCAL_RESTORE_VOLUME,
    LOCAL_VOLUME,
    SIDECAR,
    TMP_MOUNT,
    TMP_VOLUME,
)
from stash.contract.usage import usage_refusal
from stash.inject.container import (
    agent_args,
    agent_container,
    local_backend,
    security_context,
    target_mounts,
    tmp_volume,
)
from stash.inject.pod import (
    clone,
    drop_annotations,
    drop_shared_parts,
    ensure_template,
    list_field,
    pod_spec_of,
    remove_named,
    set_annotation,
    sync_pull_secrets,
    template_of,
    upsert_named,
)
from stash.inject.select import (
    auto_backup_invoker,
    choose_backup_invoker,
    invoker_hash,
    is_auto_backup,
    last_applied,
    repository_key,
    select_backup_invoker,
    select_restore_invoker,
    uses_sidecar_model,
)
from stash.settings import OperatorSettings

__all__ = [
    "ANN_BACKUP_HASH",
    "ANN_BACKUP_INVOKER",
    "ANN_BACKUP_INVOKER_KIND",
    "ANN_PULL_SECRETS",
    "ANN_RESTORE_HASH",
    "ANN_RESTORE_INVOKER",
    "ANN_RESTORE_INVOKER_KIND",
    "INIT_CONTAINER",
    "SIDECAR",
    "TMP_MOUNT",
    "TMP_VOLUME",
    "DesiredWorkload",
    "auto_backup_invoker",
    "backup_injection_problem",
    "choose_backup_invoker",
    "desired_workload",
    "inject_backup",
    "inject_restore",
    "injected_backup_invoker",
    "invoker_hash",
    "is_auto_backup",
    "remove_backup",
    "remove_restore",
    "repository_key",
    "repository_refusal",
    "select_backup_invoker",
    "select_restore_invoker",
    "uses_sidecar_model",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class DesiredWorkload:
    """The object as it should be, and why an invoker could not be injected (if so)."""

    workload: JSON
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Role:
    """What differs between the backup sidecar and the restore init-container."""

    container: str
    field: str  # containers | initContainers
    command: str
    local_volume: str
    hash_annotation: str
    invoker_annotation: str
    kind_annotation: str

    @property
    def init(self) -> bool:
        return self.field == "initContainers"


_BACKUP = _Role(
    SIDECAR,
    "containers",
    "run-backup",
    LOCAL_VOLUME,
    ANN_BACKUP_HASH,
    ANN_BACKUP_INVOKER,
    ANN_BACKUP_INVOKER_KIND,
)
_RESTORE = _Role(
    INIT_CONTAINER,
    "initContainers",
    "restore",
    LOCAL_RESTORE_VOLUME,
    ANN_RESTORE_HASH,
    ANN_RESTORE_INVOKER,
    ANN_RESTORE_INVOKER_KIND,
)


def _inject(
    out: JSON,
    invoker: BackupConfiguration | RestoreSession,
    settings: OperatorSettings,
    repository: Repository | None,
    role: _Role,
) -> None:
    """Inject in place (`out` is already a copy)."""
    spec = invoker.spec
    if spec is None or spec.target is None or spec.target.ref is None:
        raise ValueError(f"{invoker.kind} {invoker.metadata.name} has no spec.target.ref")
    meta, template = ensure_template(out)
    pod_spec = template["spec"]
    mounts = [
        {"name": TMP_VOLUME, "mountPath": TMP_MOUNT},
        *target_mounts(spec.target.volume_mounts),
    ]
    local = local_backend(repository, role.local_volume)
    if local:
        mounts.append(local[1])
    runtime = spec.runtime_settings.container if spec.runtime_settings else None
    container = agent_container(
        role.container,
        agent_args(role.command, invoker, spec.target.ref, spec.temp_dir, settings, repository),
        mounts,
        runtime,
        security_context(
            pod_spec,
            {m["name"] for m in mounts},
            runtime.security_context if runtime else None,
            restore=role.init,
        ),
        settings,
        init=role.init,
    )
    upsert_named(list_field(pod_spec, role.field), container, prepend=role.init)
    volumes = list_field(pod_spec, "volumes")
    upsert_named(volumes, tmp_volume(spec.temp_dir))
    if local:
        upsert_named(volumes, local[0])
    else:
        remove_named(pod_spec, "volumes", role.local_volume)
    sync_pull_secrets(template, list(settings.image_pull_secrets))
    set_annotation(template["metadata"], role.hash_annotation, invoker_hash(invoker))
    set_annotation(meta, role.invoker_annotation, last_applied(invoker))
    set_annotation(meta, role.kind_annotation, invoker.kind)


def _remove(out: JSON, role: _Role) -> None:
    """Remove in place (`out` is already a copy)."""
    template = template_of(out)
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        remove_named(template["spec"], role.field, role.container)
        remove_named(template["spec"], "volumes", role.local_volume)
        drop_shared_parts(template)
    if isinstance(template, dict) and isinstance(template.get("metadata"), dict):
        drop_annotations(template["metadata"], role.hash_annotation)
    if isinstance(out.get("metadata"), dict):
        drop_annotations(out["metadata"], role.invoker_annotation, role.kind_annotation)


def inject_backup(
    workload: Mapping[str, Any],
    invoker: BackupConfiguration,
    settings: OperatorSettings,
    repository: Repository | None = None,
) -> JSON:
    """Return `workload` with the `stash` backup sidecar injected for `invoker` (§4.2).

    `repository` is the invoker's Repository; it is needed for a local backend (its
    volume is mounted into the sidecar) and for `--max-connections`. Raises ValueError
    when the invoker has no `spec.target.ref`.
    """
    out: JSON = clone(workload)
    _inject(out, invoker, settings, repository, _BACKUP)
    return out


def remove_backup(workload: Mapping[str, Any]) -> JSON:
    """Return `workload` without the backup sidecar and everything injected with it.

    The scratch volume and our pull secrets stay while a `stash-init` remains.
    """
    out: JSON = clone(workload)
    _remove(out, _BACKUP)
    return out


def inject_restore(
    workload: Mapping[str, Any],
    invoker: RestoreSession,
    settings: OperatorSettings,
    repository: Repository | None = None,
) -> JSON:
    """Return `workload` with the `stash-init` restore init-container prepended (§4.3).

    An existing `stash-init` is replaced where it stands (so re-admission is a no-op).
    """
    out: JSON = clone(workload)
    _inject(out, invoker, settings, repository, _RESTORE)
    return out


def remove_restore(workload: Mapping[str, Any]) -> JSON:
    """Return `workload` without the restore init-container and what came with it."""
    out: JSON = clone(workload)
    _remove(out, _RESTORE)
    return out


# ------------------------------------------------------------------ the shared entry point


def pod_volume_names(workload: Mapping[str, Any]) -> set[str]:
    """The volume names a workload's pods have: the pod template's volumes and, for a
    StatefulSet, its volumeClaimTemplates (the StatefulSet controller adds a volume of
    that name to every pod, so mounts may name them)."""
    pod_spec = pod_spec_of(workload)
    names = {v.get("name") for v in pod_spec.get("volumes") or [] if isinstance(v, dict)}
    if workload.get("kind") == "StatefulSet":
        for claim in (workload.get("spec") or {}).get("volumeClaimTemplates") or []:
            if isinstance(claim, dict):
                names.add((claim.get("metadata") or {}).get("name"))
    return {n for n in names if isinstance(n, str) and n}


def _missing_volumes(
    workload: Mapping[str, Any], invoker: BackupConfiguration | RestoreSession
) -> list[str]:
    target = invoker.spec.target if invoker.spec else None
    wanted = [m.name for m in (target.volume_mounts if target else None) or []]
    have = pod_volume_names(workload)
    return [name for name in wanted if name not in have]


def _problem(
    workload: Mapping[str, Any], invoker: BackupConfiguration | RestoreSession, what: str
) -> str | None:
    missing = _missing_volumes(workload, invoker)
    if not missing:
        return None
    names = ", ".join(f'"{n}"' for n in missing)
    return (
        f"not injecting the {what} for {invoker.kind} {invoker.metadata.namespace}/"
        f"{invoker.metadata.name}: spec.target.volumeMounts names volume(s) {names} "
        "that the pod template (or the StatefulSet's volumeClaimTemplates) does not have; "
        "fix the volume names in the invoker"
    )


def repository_refusal(
    invoker: BackupConfiguration | RestoreSession,
    repositories: Mapping[str, Repository],
    labels: Mapping[str, str] | None,
) -> str | None:
    """Why `invoker` may not use its Repository from its namespace (`labels`: that
    namespace's); a Repository in another namespace that is not in `repositories` cannot
    be checked, so it refuses too."""
    key, ns = repository_key(invoker), str(invoker.metadata.namespace)
    if not key or key.partition("/")[0] == ns:
        return None
    repo = repositories.get(key)
    if repo is None:
        return (
            f"Repository {key} (in another namespace) was not found, so its usage policy "
            "cannot be checked"
        )
    return usage_refusal(repo, ns, labels)


def _refused(
    invoker: BackupConfiguration | RestoreSession,
    repositories: Mapping[str, Repository],
    labels: Mapping[str, str] | None,
    what: str,
) -> str | None:
    why = repository_refusal(invoker, repositories, labels)
    if why is None:
        return None
    meta = invoker.metadata
    return f"not injecting the {what} for {invoker.kind} {meta.namespace}/{meta.name}: {why}"


def backup_injection_problem(
    workload: Mapping[str, Any], invoker: BackupConfiguration
) -> str | None:
    """Why the backup sidecar cannot be injected into `workload` for `invoker` (None
    when it can): the same rule `desired_workload` applies."""
    return _problem(workload, invoker, "backup sidecar")


def injected_backup_invoker(workload: Mapping[str, Any]) -> str | None:
    """The name of the invoker whose backup sidecar the workload's pod template runs
    (from the sidecar's `--invoker-name`), None without one."""
    for container in pod_spec_of(workload).get("containers") or []:
        if isinstance(container, dict) and container.get("name") == SIDECAR:
            for arg in container.get("args") or []:
                if isinstance(arg, str) and arg.startswith("--invoker-name="):
                    return arg.partition("=")[2]
    return None


def desired_workload(
    workload: Mapping[str, Any],
    backup: BackupConfiguration | None,
    restore: RestoreSession | None,
    settings: OperatorSettings,
    repositories: Mapping[str, Repository],
    namespace_labels: Mapping[str, str] | None = None,
) -> DesiredWorkload:
    """The workload as it should be: the agent injected for the invokers given, removed
    for those that are None (or not sidecar-model) and for those whose Repository's usage
    policy refuses their namespace (`stash.contract.usage`; `namespace_labels` are the
    workload's namespace's labels).

    `repositories` maps `namespace/name` (see `repository_key`) to Repository objects;
    a missing entry in the invoker's own namespace only means no local-backend volume and
    default connections; in another namespace it means no injection.
    A Pod (GitOps `pod` mode) is only ever injected into, never cleaned (pods are
    immutable); in `pod` mode workloads are cleaned of any template injection.
    """
    is_pod = workload.get("kind") == "Pod"
    if is_pod and settings.injection_mode != "pod":
        return DesiredWorkload(clone(workload))
    if not is_pod and settings.injection_mode == "pod":
        backup = restore = None
    problems: list[str] = []
    if backup is not None and uses_sidecar_model(backup):
        problem = _refused(backup, repositories, namespace_labels, "backup sidecar") or _problem(
            workload, backup, "backup sidecar"
        )
        if problem:
            problems.append(problem)
            backup = None
    else:
        backup = None
    if restore is not None and uses_sidecar_model(restore):
        what = "restore init-container"
        problem = _refused(restore, repositories, namespace_labels, what) or _problem(
            workload, restore, what
        )
        if problem:
            problems.append(problem)
            restore = None
    else:
        restore = None

    def repo(inv: BackupConfiguration | RestoreSession) -> Repository | None:
        key = repository_key(inv)
        return repositories.get(key) if key else None

    out: JSON = clone(workload)
    if backup is not None:
        _inject(out, backup, settings, repo(backup), _BACKUP)
    elif not is_pod:
        _remove(out, _BACKUP)
    if restore is not None:
        _inject(out, restore, settings, repo(restore), _RESTORE)
    elif not is_pod:
        _remove(out, _RESTORE)
    return DesiredWorkload(out, tuple(problems))
