"""The agent container (`stash` sidecar or `stash-init`) and the volumes it brings.

Not for: placing it into a pod template (`stash.inject`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stash.api import BackupConfiguration, Repository, RestoreSession
from stash.api.common import ContainerRuntimeSettings, EmptyDirSettings, TargetRef
from stash.contract.names import SIDECAR, TMP_VOLUME
from stash.inject.pod import clone, upsert_named
from stash.settings import OperatorSettings

JSON = dict[str, Any]

# Restoring as root needs these to give files back their owners and modes; all of them
# are in the Pod Security "baseline" set.
_RESTORE_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]


def _field_env(name: str, path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _env(settings: ContainerRuntimeSettings | None) -> list[JSON]:
    env = [
        _field_env("NODE_NAME", "spec.nodeName"),
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
    ]
    if settings and settings.nice and settings.nice.adjustment is not None:
        env.append({"name": "NICE_ADJUSTMENT", "value": str(settings.nice.adjustment)})
    if settings and settings.ionice:
        if settings.ionice.class_ is not None:
            env.append({"name": "IONICE_CLASS", "value": str(settings.ionice.class_)})
        if settings.ionice.class_data is not None:
            env.append({"name": "IONICE_CLASS_DATA", "value": str(settings.ionice.class_data)})
    for extra in (settings.env if settings else None) or []:
        if isinstance(extra, dict) and extra.get("name"):
            upsert_named(env, clone(extra))
    return env


def _max_connections(repository: Repository | None) -> int:
    backend = repository.spec.backend if repository and repository.spec else None
    if backend is None:
        return 0
    for spec in (backend.gcs, backend.azure, backend.b2):
        if spec is not None and spec.max_connections:
            return spec.max_connections
    return 0


def agent_args(
    command: str,
    invoker: BackupConfiguration | RestoreSession,
    ref: TargetRef,
    temp_dir: EmptyDirSettings | None,
    settings: OperatorSettings,
    repository: Repository | None,
) -> list[str]:
    """The agent's command line after `stash` (§4.2 for `run-backup`, §4.3 for `restore`)."""
    invoker_flags = [
        f"--invoker-name={invoker.metadata.name}",
        f"--invoker-kind={invoker.kind}",
    ]
    if command == "restore":  # upstream names the kind first for restores
        invoker_flags.reverse()
    caching = not (temp_dir is not None and temp_dir.disable_caching)
    return [
        command,
        *invoker_flags,
        f"--target-name={ref.name}",
        f"--target-namespace={ref.namespace or invoker.metadata.namespace}",
        f"--target-kind={ref.kind}",
        f"--enable-cache={str(caching).lower()}",
        f"--max-connections={_max_connections(repository)}",
        "--metrics-enabled=true",
        f"--pushgateway-url={settings.pushgateway_url or ''}",
    ]


def _identity(pod_spec: JSON, volume_names: set[str]) -> JSON:
    """runAsUser/runAsGroup/runAsNonRoot of the first container that mounts one of
    `volume_names`: the agent reads and writes those files as the same user."""
    for container in pod_spec.get("containers") or []:
        if not isinstance(container, dict) or container.get("name") == SIDECAR:
            continue
        mounted = {
            m.get("name") for m in container.get("volumeMounts") or [] if isinstance(m, dict)
        }
        if mounted & volume_names:
            sc = container.get("securityContext") or {}
            return {k: sc[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot") if k in sc}
    return {}


def security_context(
    pod_spec: JSON,
    volume_names: set[str],
    user: Mapping[str, Any] | None,
    *,
    restore: bool,
) -> JSON:
    """The agent's securityContext: no privilege escalation, no capabilities, the
    RuntimeDefault seccomp profile, and the identity of the container whose volumes it
    reads — or, for a restore into a pod that does not insist on non-root, root with the
    capabilities restic needs to restore ownership. `user` (runtimeSettings) wins."""
    identity = _identity(pod_spec, volume_names)
    pod_sc = pod_spec.get("securityContext") or {}
    non_root = bool(identity.get("runAsNonRoot") or pod_sc.get("runAsNonRoot"))
    sc: JSON = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if restore and not non_root:
        # §4.3: restore as root so restic can give files their original owners.
        sc["runAsUser"] = 0
        sc["runAsGroup"] = 0
        sc["capabilities"] = {"drop": ["ALL"], "add": list(_RESTORE_CAPABILITIES)}
    else:
        sc.update(identity)
    sc.update(clone(dict(user or {})))
    return sc


def agent_container(
    name: str,
    args: list[str],
    mounts: list[JSON],
    runtime: ContainerRuntimeSettings | None,
    security_context: JSON,
    settings: OperatorSettings,
    *,
    init: bool,
) -> JSON:
    """The agent container; `init` leaves out what init-containers may not have."""
    # Fields Kubernetes would default are set to their defaults, so a stored (defaulted)
    # container compares equal to a freshly built one and re-admission patches nothing.
    container: JSON = {
        "name": name,
        "image": settings.image_ref,
        "imagePullPolicy": "Always" if settings.image_tag == "latest" else "IfNotPresent",
        "command": ["stash"],
        "args": args,
        "env": _env(runtime),
        "resources": clone(runtime.resources) if runtime and runtime.resources else {},
        "volumeMounts": mounts,
        "securityContext": security_context,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if runtime and runtime.env_from:
        container["envFrom"] = clone(runtime.env_from)
    if runtime and not init:  # init-containers may not have probes or lifecycle hooks
        for field, value in (
            ("livenessProbe", runtime.liveness_probe),
            ("readinessProbe", runtime.readiness_probe),
            ("lifecycle", runtime.lifecycle),
        ):
            if value:
                container[field] = clone(value)
    return container


def tmp_volume(temp_dir: EmptyDirSettings | None) -> JSON:
    """The `stash-tmp-dir` emptyDir volume (tempDir medium and sizeLimit)."""
    empty_dir: JSON = {}
    if temp_dir and temp_dir.medium:
        empty_dir["medium"] = temp_dir.medium
    if temp_dir and temp_dir.size_limit is not None:
        empty_dir["sizeLimit"] = temp_dir.size_limit
    return {"name": TMP_VOLUME, "emptyDir": empty_dir}


def local_backend(repository: Repository | None, volume: str) -> tuple[JSON, JSON] | None:
    """The (volume, mount) for a local-backend repository, else None."""
    backend = repository.spec.backend if repository and repository.spec else None
    local = backend.local if backend else None
    if local is None:
        return None
    mount: JSON = {"name": volume, "mountPath": local.mount_path}
    if local.sub_path:
        mount["subPath"] = local.sub_path
    return _server_defaults({"name": volume, **clone(local.volume_source())}), mount


#: Fields the apiserver sets on a pod template's volume when they are absent.
_VOLUME_DEFAULTS: dict[str, dict[str, object]] = {
    "hostPath": {"type": ""},
    "secret": {"defaultMode": 0o644},
    "configMap": {"defaultMode": 0o644},
}


def _server_defaults(volume: JSON) -> JSON:
    """`volume` as the apiserver stores it: a stored template then equals the desired one,
    so the workload is not patched again on every pass (the patch removed `hostPath.type`,
    the apiserver put it back) and a ReplicaSet's stale pods are recognised."""
    for source, defaults in _VOLUME_DEFAULTS.items():
        if isinstance(volume.get(source), dict):
            volume[source] = {**defaults, **volume[source]}
    return volume


def target_mounts(volume_mounts: Iterable[Any] | None) -> list[JSON]:
    """The invoker's `target.volumeMounts` as container volumeMounts."""
    return [m.to_wire() for m in volume_mounts or []]
