"""Backup and restore executors the operator ensures (§5.4 step 6, §5.5, §5.6):
the agent's RBAC for sidecar targets, and Jobs (with their PVCs) for job-model targets.

Each `ensure_*` is idempotent (an existing Job or binding is success) and answers
(ok, message) for the `BackupExecutorEnsured` / `RestoreExecutorEnsured` conditions,
so a missing Task or Function becomes a condition a person can act on, not a crash.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from stash.api import GROUP
from stash.contract.rbac import agent_cluster_roles
from stash.contract.resources import FUNCTIONS, TASKS
from stash.contract.workloads import execution_model
from stash.controllers.context import ControllerContext
from stash.controllers.jobs import build_job, envsubst, job_name
from stash.kube.client import JSON, Conflict, KubeError, NotFound
from stash.kube.resources import CLUSTERROLES, JOBS, PVCS, ROLEBINDINGS, SERVICEACCOUNTS

log = logging.getLogger(__name__)

AGENT_SERVICE_ACCOUNT = "stash-agent"
#: The server-side-apply field manager of what the operator applies.
FIELD_MANAGER = "stash-operator"


def is_job_model(invoker: JSON) -> bool:
    """Job model (`stash.contract.workloads.execution_model`): a Task is named, or the
    target is not a workload, and the driver is restic."""
    spec = invoker.get("spec") or {}
    ref = (spec.get("target") or {}).get("ref") or {}
    model = execution_model(
        spec.get("driver"), (spec.get("task") or {}).get("name"), ref.get("kind")
    )
    return model == "job"


async def install_cluster_roles(ctx: ControllerContext) -> None:
    """Apply the agent ClusterRoles (stash-sidecar, stash-backup-job, ...): ours, so forced."""
    for role in agent_cluster_roles():
        await ctx.kube.apply(CLUSTERROLES, role, field_manager=FIELD_MANAGER, force=True)


async def ensure_binding(ctx: ControllerContext, ns: str, sa: str, cluster_role: str) -> None:
    """RoleBinding `<cluster_role>-<sa>` in `ns` granting `cluster_role` to ServiceAccount `sa`."""
    body = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": f"{cluster_role}-{sa}"[:253],
            "labels": {"app.kubernetes.io/managed-by": GROUP},
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }
    with contextlib.suppress(Conflict):
        await ctx.kube.create(ROLEBINDINGS, body, ns)


async def _ensure_service_account(ctx: ControllerContext, ns: str, name: str) -> None:
    with contextlib.suppress(Conflict):
        await ctx.kube.create(SERVICEACCOUNTS, {"metadata": {"name": name}}, ns)


def _settings(ctx: ControllerContext) -> Any:
    return ctx.hooks.get("settings")


def _image_inputs(ctx: ControllerContext) -> dict[str, str]:
    s = _settings(ctx)
    if s is None:
        return {
            "STASH_DOCKER_REGISTRY": "stash",
            "STASH_DOCKER_IMAGE": "stash",
            "STASH_IMAGE_TAG": "latest",
        }
    return {
        "STASH_DOCKER_REGISTRY": s.docker_registry,
        "STASH_DOCKER_IMAGE": s.image,
        "STASH_IMAGE_TAG": s.image_tag,
        "PROMETHEUS_PUSHGATEWAY_URL": s.pushgateway_url or "",
    }


def repository_inputs(repo: JSON | None) -> dict[str, str]:
    """§5.5 repository variables from a Repository object."""
    if repo is None:
        return {}
    backend = (repo.get("spec") or {}).get("backend") or {}
    provider = next(
        (p for p in ("local", "s3", "gcs", "azure", "swift", "b2", "rest") if backend.get(p)), ""
    )
    spec = backend.get(provider) or {}
    return {
        "REPOSITORY_NAME": repo["metadata"]["name"],
        "REPOSITORY_NAMESPACE": repo["metadata"]["namespace"],
        "REPOSITORY_PROVIDER": provider,
        "REPOSITORY_BUCKET": str(spec.get("bucket") or spec.get("container") or ""),
        "REPOSITORY_PREFIX": str(spec.get("prefix") or ""),
        "REPOSITORY_ENDPOINT": str(spec.get("endpoint") or spec.get("url") or ""),
        "REPOSITORY_REGION": str(spec.get("region") or ""),
        "REPOSITORY_INSECURE_TLS": str(bool(spec.get("insecureTLS"))).lower(),
        "REPOSITORY_SECRET_NAME": str(backend.get("storageSecretName") or ""),
        "REPOSITORY_SECRET_NAMESPACE": repo["metadata"]["namespace"],
        "MAX_CONNECTIONS": str(spec.get("maxConnections") or 0),
    }


def target_inputs(target: JSON, ns: str) -> dict[str, str]:
    """§5.5 target variables from a BackupTarget / RestoreTarget."""
    ref = target.get("ref") or {}
    mounts = target.get("volumeMounts") or []
    paths = target.get("paths") or []
    return {
        "TARGET_KIND": str(ref.get("kind") or ""),
        "TARGET_NAME": str(ref.get("name") or ""),
        "TARGET_NAMESPACE": str(ref.get("namespace") or ns),
        "TARGET_PATHS": ",".join(paths) or "/stash-data",
        "TARGET_MOUNT_PATH": str(mounts[0]["mountPath"]) if mounts else "/stash-data",
        "EXCLUDE_PATTERNS": ",".join(target.get("exclude") or []),
        "DRIVER_ARGS": " ".join(target.get("args") or []),
    }


async def _task_and_functions(
    ctx: ControllerContext, task_name: str
) -> tuple[JSON, dict[str, JSON]]:
    try:
        task = await ctx.kube.get(TASKS, task_name)
    except NotFound:
        raise LookupError(f"Task {task_name} does not exist") from None
    functions: dict[str, JSON] = {}
    for step in (task.get("spec") or {}).get("steps") or []:
        try:
            functions[step["name"]] = await ctx.kube.get(FUNCTIONS, step["name"])
        except NotFound:
            raise LookupError(
                f"Function {step['name']} (a step of Task {task_name}) does not exist"
            ) from None
    return task, functions


async def ensure_backup_executor(
    ctx: ControllerContext, session: JSON, invoker: JSON, ref: JSON, index: int
) -> tuple[bool, str]:
    """Make sure something will back up target `index` of `session`."""
    ns = session["metadata"]["namespace"]
    spec = invoker.get("spec") or {}
    pod_settings = (spec.get("runtimeSettings") or {}).get("pod") or {}
    if not is_job_model(invoker):
        sa = await workload_service_account(ctx, ref, ns)
        await ensure_binding(ctx, ns, sa, "stash-sidecar")
        return (
            True,
            f"the stash sidecar in {ref.get('kind')} {ns}/{ref.get('name')} runs this backup",
        )
    task_name = (spec.get("task") or {}).get("name") or "pvc-backup"
    try:
        task, functions = await _task_and_functions(ctx, task_name)
    except LookupError as exc:
        return False, str(exc)
    sa = await _agent_account(ctx, ns, pod_settings, "stash-backup-job")
    repo_ref = spec.get("repository") or {}
    repo = ctx.caches.repositories.get(f"{repo_ref.get('namespace') or ns}/{repo_ref.get('name')}")
    retention = spec.get("retentionPolicy") or {}
    inputs = {
        **repository_inputs(repo),
        **target_inputs(spec.get("target") or {}, ns),
        **_image_inputs(ctx),
        "NAMESPACE": ns,
        "BACKUP_SESSION": session["metadata"]["name"],
        "INVOKER_KIND": str(invoker.get("kind")),
        "INVOKER_NAME": invoker["metadata"]["name"],
        "HOSTNAME": ((spec.get("target") or {}).get("alias")) or "host-0",
        "ENABLE_CACHE": str(not (spec.get("tempDir") or {}).get("disableCaching")).lower(),
        "RETENTION_KEEP_LAST": str(retention.get("keepLast") or 0),
        "RETENTION_PRUNE": str(bool(retention.get("prune"))).lower(),
        "RETENTION_DRY_RUN": str(bool(retention.get("dryRun"))).lower(),
    }
    name = job_name("stash-backup", session["metadata"]["name"], index)
    ok, message = await _submit_job(
        ctx,
        ns,
        dict(
            name=name,
            namespace=ns,
            task=task,
            functions=functions,
            inputs=inputs,
            invoker_params=_task_params(spec),
            labels={**(session["metadata"].get("labels") or {})},
            owner=_owner(session),
            service_account=sa,
            run_as_user=_run_as(pod_settings, 65535),
            pod_settings={
                k: pod_settings.get(k) for k in ("nodeSelector", "tolerations", "affinity")
            },
            container_settings=(spec.get("runtimeSettings") or {}).get("container"),
        ),
    )
    if not ok:
        return False, message
    return True, f"Job {ns}/{name} runs this backup"


async def ensure_restore_executor(ctx: ControllerContext, rs: JSON) -> tuple[bool, str, int]:
    """Jobs (and PVCs from volumeClaimTemplates) for a job-model RestoreSession; returns
    (ok, message, hosts)."""
    ns = rs["metadata"]["namespace"]
    spec = rs.get("spec") or {}
    target = spec.get("target") or {}
    templates = target.get("volumeClaimTemplates") or []
    replicas = int(target.get("replicas") or 1) if templates else 1
    task_name = (spec.get("task") or {}).get("name") or "pvc-restore"
    try:
        task, functions = await _task_and_functions(ctx, task_name)
    except LookupError as exc:
        return False, str(exc), replicas
    pod_settings = (spec.get("runtimeSettings") or {}).get("pod") or {}
    sa = await _agent_account(ctx, ns, pod_settings, "stash-restore-job")
    repo_ref = spec.get("repository") or {}
    repo = ctx.caches.repositories.get(f"{repo_ref.get('namespace') or ns}/{repo_ref.get('name')}")
    rules = target.get("rules") or spec.get("rules") or []
    rule = next((r for r in rules if not r.get("targetHosts")), rules[0] if rules else {})
    for ordinal in range(replicas):
        ords = {"POD_ORDINAL": str(ordinal)}
        claim = ""
        for tmpl in templates:
            pvc = envsubst(
                {"metadata": dict(tmpl.get("metadata") or {}), "spec": tmpl.get("spec") or {}}, ords
            )
            pvc["metadata"]["ownerReferences"] = [_owner(rs)]
            claim = claim or pvc["metadata"]["name"]
            with contextlib.suppress(Conflict):
                await ctx.kube.create(PVCS, pvc, ns)
        host = (
            (f"{target['alias']}-{ordinal}" if target.get("alias") else f"host-{ordinal}")
            if templates
            else (target.get("alias") or "host-0")
        )
        inputs = {
            **repository_inputs(repo),
            **target_inputs(target, ns),
            **_image_inputs(ctx),
            "TARGET_NAME": claim or str((target.get("ref") or {}).get("name") or ""),
            "NAMESPACE": ns,
            "RESTORE_SESSION": rs["metadata"]["name"],
            "INVOKER_KIND": "RestoreSession",
            "INVOKER_NAME": rs["metadata"]["name"],
            "HOSTNAME": host,
            "SOURCE_HOSTNAME": str(rule.get("sourceHost") or ""),
            "RESTORE_PATHS": ",".join(rule.get("paths") or []),
            "RESTORE_SNAPSHOTS": ",".join(rule.get("snapshots") or []),
            "INCLUDE_PATTERNS": ",".join(rule.get("include") or []),
            "EXCLUDE_PATTERNS": ",".join(rule.get("exclude") or []),
            "TARGET_APP_REPLICAS": str(replicas),
            **ords,
        }
        name = job_name("stash-restore", rs["metadata"]["name"], 0, ordinal if templates else None)
        ok, message = await _submit_job(
            ctx,
            ns,
            dict(
                name=name,
                namespace=ns,
                task=task,
                functions=functions,
                inputs=inputs,
                invoker_params=_task_params(spec),
                labels={
                    "app.kubernetes.io/component": "stash-restore",
                    "app.kubernetes.io/managed-by": GROUP,
                },
                owner=_owner(rs),
                service_account=sa,
                run_as_user=_run_as(pod_settings, 0),
                extra_env=[{"name": "POD_ORDINAL", "value": str(ordinal)}],
                container_settings=(spec.get("runtimeSettings") or {}).get("container"),
            ),
        )
        if not ok:
            return False, message, replicas
    return True, f"{replicas} restore Job(s) created", replicas


async def workload_service_account(ctx: ControllerContext, ref: JSON, ns: str) -> str:
    workloads = ctx.hooks.get("workloads") or {}
    inf = workloads.get(ref.get("kind"))
    obj = inf.get(f"{ref.get('namespace') or ns}/{ref.get('name')}") if inf else None
    spec = ((obj or {}).get("spec") or {}).get("template", {}).get("spec", {}) if obj else {}
    return str(spec.get("serviceAccountName") or "default")


def _task_params(spec: JSON) -> dict[str, str]:
    """The invoker's `task.params` as variables (they win over operator inputs)."""
    return {
        p["name"]: str(p.get("value", "")) for p in (spec.get("task") or {}).get("params") or []
    }


async def _agent_account(ctx: ControllerContext, ns: str, pod_settings: JSON, role: str) -> str:
    """The Job's ServiceAccount (the invoker's, or `stash-agent`, created) bound to `role`."""
    sa = str(pod_settings.get("serviceAccountName") or AGENT_SERVICE_ACCOUNT)
    if sa == AGENT_SERVICE_ACCOUNT:
        await _ensure_service_account(ctx, ns, sa)
    await ensure_binding(ctx, ns, sa, role)
    return sa


async def _submit_job(ctx: ControllerContext, ns: str, spec: dict[str, Any]) -> tuple[bool, str]:
    """Build the Job (`build_job(**spec)`) and create it; an existing one is success."""
    try:
        job = build_job(**spec)
    except (KeyError, ValueError) as exc:
        return False, str(exc)
    try:
        await ctx.kube.create(JOBS, job, ns)
    except Conflict:
        pass
    except KubeError as exc:
        return False, f"creating Job {ns}/{spec['name']}: {exc.message or exc}"
    return True, ""


def _run_as(pod_settings: JSON, default: int) -> int:
    """runtimeSettings.pod.securityContext.runAsUser, else the model's default (0 counts)."""
    value = (pod_settings.get("securityContext") or {}).get("runAsUser")
    return default if value is None else int(value)


def _owner(obj: JSON) -> JSON:
    return {
        "apiVersion": obj.get("apiVersion", f"{GROUP}/v1beta1"),
        "kind": obj.get("kind"),
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
