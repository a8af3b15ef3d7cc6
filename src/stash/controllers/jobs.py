"""Pure Job building for the job model (§5.5): Task + Functions + invoker -> Job.

`envsubst` resolves `${VAR}` / `${VAR:=default}` in every string of the Task and then
each Function (precedence: a step's params from the Task < the invoker's `task.params`
< operator inputs; an invoker's value for a name in `OPERATOR_PARAMS` — the image, the
Repository, the session — is dropped, so only the operator sets those); all steps but
the last become init-containers so they run in order in one pod sharing `/stash-tmp`;
the Task's volumes become pod volumes, and a local-backend Repository's volume is
mounted in every step (as upstream's `AttachLocalBackend`).
Not for: creating anything (the reconcilers do).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from stash.contract.taskparams import OPERATOR_PARAMS
from stash.kube.client import JSON

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}")
TMP_VOLUME = {"name": "stash-tmp-dir", "emptyDir": {}}
TMP_MOUNT = {"name": "stash-tmp-dir", "mountPath": "/stash-tmp"}


def envsubst(value: Any, variables: Mapping[str, str]) -> Any:
    """Substitute `${VAR}` and `${VAR:=default}` in every string of a JSON value.
    Unset variables without a default become empty strings, as envsubst does."""
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            got = variables.get(m.group(1))
            if got not in (None, ""):
                return str(got)
            return m.group(2) if m.group(2) is not None else ""

        return _VAR.sub(one, value)
    if isinstance(value, list):
        return [envsubst(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: envsubst(v, variables) for k, v in value.items()}
    return value


def job_name(prefix: str, session: str, index: int, ordinal: int | None = None) -> str:
    """`<prefix>-<session>-<index>[-<ordinal>]`; past 63 characters (a Job's name is a pod
    label value) its first 54 characters and 8 hex digits of its SHA-256, so two long
    names that share a beginning or an end never give one Job (a truncation did)."""
    name = f"{prefix}-{session}-{index}" + (f"-{ordinal}" if ordinal is not None else "")
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-.')}-{digest}"


def job_conflict(existing: JSON, owner: JSON) -> str | None:
    """After a 409 on creating a Job: None when the `existing` Job is ours (its
    controller owner reference is `owner`: kind, name and uid), else why it is not."""
    refs = existing.get("metadata", {}).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller") and all(
            ref.get(k) == owner.get(k) for k in ("kind", "name", "uid")
        ):
            return None
    meta = existing.get("metadata", {})
    by = ", ".join(f"{r.get('kind')} {r.get('name')}" for r in refs) or "nothing (no owner)"
    return (
        f"a Job named {meta.get('namespace')}/{meta.get('name')} already exists and belongs "
        f"to {by}, not to {owner.get('kind')} {owner.get('name')}; it is left alone and this "
        "host is not run: delete or rename that Job"
    )


def _params(items: list[JSON] | None) -> dict[str, str]:
    return {str(p["name"]): str(p.get("value", "")) for p in items or [] if p.get("name")}


def pod_security_context(given: Mapping[str, Any]) -> JSON:
    """A Job pod's securityContext: what was given (runtimeSettings win key by key) plus
    the RuntimeDefault seccomp profile and, for a non-root user, `runAsNonRoot`, so the
    pod passes Pod Security `restricted` unless it must run as root (a restore that
    restores file ownership; that needs `baseline`, see docs/webhooks.md)."""
    sc: JSON = {"seccompProfile": {"type": "RuntimeDefault"}, **given}
    if sc.get("runAsUser") not in (0, None) and "runAsNonRoot" not in sc:
        sc["runAsNonRoot"] = True
    return sc


def build_job(
    *,
    name: str,
    namespace: str,
    task: JSON,
    functions: Mapping[str, JSON],
    inputs: Mapping[str, str],
    invoker_params: Mapping[str, str],
    labels: Mapping[str, str],
    owner: JSON,
    service_account: str,
    run_as_user: int,
    pod_settings: Mapping[str, Any] | None = None,
    container_settings: Mapping[str, Any] | None = None,
    extra_env: list[JSON] | None = None,
    backend_volume: tuple[JSON, JSON] | None = None,
) -> JSON:
    """The Job that runs `task`'s steps in order for one target (and host); with
    `backend_volume`, a local backend's (volume, mount) attached (`attach_backend`)."""
    task_spec = task.get("spec") or {}
    invoker_params = {k: v for k, v in invoker_params.items() if k not in OPERATOR_PARAMS}
    containers: list[JSON] = []
    for i, step in enumerate(task_spec.get("steps") or []):
        fn = functions.get(step.get("name", ""))
        if fn is None:
            raise KeyError(
                f"Function {step.get('name')} (step {i} of Task "
                f"{task['metadata']['name']}) not found"
            )
        variables = {**_params(step.get("params")), **invoker_params, **inputs}
        spec = envsubst(fn.get("spec") or {}, variables)
        step_name = f"{fn['metadata']['name'].replace('.', '-')}-{i}"
        container = _step_container(step_name, spec, extra_env or [])
        _apply_container_settings(container, container_settings or {})
        containers.append(container)
    if not containers:
        raise ValueError(f"Task {task['metadata']['name']} has no steps")
    variables = {**invoker_params, **inputs}
    volumes = [*envsubst(task_spec.get("volumes") or [], variables), dict(TMP_VOLUME)]
    pod: JSON = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account,
        "securityContext": {"runAsUser": run_as_user, "runAsGroup": run_as_user},
        "initContainers": containers[:-1],
        "containers": containers[-1:],
        "volumes": volumes,
    }
    if backend_volume is not None:
        attach_backend(pod, *backend_volume)
    for key, value in (pod_settings or {}).items():
        if value is not None:
            pod[key] = value
    pod["securityContext"] = pod_security_context(pod.get("securityContext") or {})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }


def _step_container(name: str, spec: JSON, extra_env: list[JSON]) -> JSON:
    """A step's container from its Function's resolved spec."""
    container: JSON = {
        "name": name,
        "image": spec.get("image"),
        "command": spec.get("command") or [],
        "args": spec.get("args") or [],
        "volumeMounts": [*(spec.get("volumeMounts") or []), dict(TMP_MOUNT)],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            *extra_env,
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.get("workingDir"):
        container["workingDir"] = spec["workingDir"]
    return container


def attach_backend(pod: JSON, volume: JSON, mount: JSON) -> None:
    """Give a Job's pod a local-backend Repository's volume (from
    `stash.inject.container.local_backend`) and mount it in every step, so restic finds
    the repository at `backend.local.mountPath` (upstream's `AttachLocalBackend`)."""
    pod["volumes"] = [*(v for v in pod["volumes"] if v.get("name") != volume["name"]), volume]
    for container in [*pod["initContainers"], *pod["containers"]]:
        kept = [m for m in container["volumeMounts"] if m["name"] != mount["name"]]
        container["volumeMounts"] = [*kept, dict(mount)]


def _apply_container_settings(container: JSON, settings: Mapping[str, Any]) -> None:
    """runtimeSettings.container on a step (§1.1): env/envFrom appended (a name given
    twice: the setting wins), resources, probes and securityContext replaced."""
    env = {e["name"]: e for e in container.get("env") or []}
    for e in settings.get("env") or []:
        env[e["name"]] = e
    container["env"] = list(env.values())
    if settings.get("envFrom"):
        container["envFrom"] = list(settings["envFrom"])
    for key in ("resources", "securityContext", "livenessProbe", "readinessProbe", "lifecycle"):
        if settings.get(key) is not None:
            container[key] = settings[key]
