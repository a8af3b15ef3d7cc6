"""What the operator provisions so that a backup or restore can run (§5.4 step 6, §5.5,
§5.6): the agent's RBAC for workload targets (the sidecar / init-container runs the
work), and Jobs (with their PVCs) for job-model targets.

The thing that runs the work is the *executor* (upstream's word, as in the conditions
`BackupExecutorEnsured` / `RestoreExecutorEnsured`); its code is `stash.agent`. Each
`ensure_*` here is idempotent (an existing Job or binding is success) and answers
(ok, message) for those conditions, so a missing Task or Function becomes a condition a
person can act on, not a crash. Not for: building the Job (`jobs`, pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from stash.api import GROUP, BackupConfiguration, BackupSession, Repository, RestoreSession
from stash.api.common import (
    BackupTarget,
    PodRuntimeSettings,
    RestoreTarget,
    Rule,
    RuntimeSettings,
    TargetRef,
    TaskRef,
)
from stash.api.k8s import PersistentVolumeClaimTemplate
from stash.api.restoresession import RestoreSessionSpec
from stash.contract.authority import AGENT_SERVICE_ACCOUNT
from stash.contract.names import LOCAL_VOLUME
from stash.contract.rbac import agent_cluster_roles
from stash.contract.resources import FUNCTIONS, TASKS
from stash.contract.restorerules import job_host, rule_for_host
from stash.contract.sessions import LABEL_MANAGED_BY
from stash.contract.workloads import execution_model
from stash.controllers.access import (
    FIELD_MANAGER,
    agent_account,
    ensure_binding,
    grant_repository_access,
)
from stash.controllers.appbindings import app_target
from stash.controllers.context import ControllerContext
from stash.controllers.jobs import build_job, envsubst, job_conflict, job_name
from stash.controllers.liveness import JOB_HOST_ANNOTATION
from stash.inject.container import local_backend
from stash.inject.pod import pod_spec_of
from stash.kube.client import JSON, Conflict, KubeError, NotFound
from stash.kube.resources import CLUSTERROLES, JOBS, PVCS
from stash.settings import OperatorSettings

log = logging.getLogger(__name__)

__all__ = [
    "AGENT_SERVICE_ACCOUNT",
    "FIELD_MANAGER",
    "ensure_backup_executor",
    "ensure_binding",
    "ensure_restore_executor",
    "install_cluster_roles",
    "is_job_model",
    "repository_inputs",
    "target_inputs",
    "workload_service_account",
]


def is_job_model(invoker: BackupConfiguration | RestoreSession) -> bool:
    """Whether a Job runs the invoker's work (`execution_model` is `job`): a Task is
    named, or the target is not a workload, and the driver is restic."""
    spec = invoker.spec
    if spec is None:
        return execution_model(None, None, None) == "job"
    ref = spec.target.ref if spec.target else None
    task = spec.task.name if spec.task else None
    return execution_model(spec.driver, task, ref.kind if ref else None) == "job"


async def install_cluster_roles(ctx: ControllerContext) -> None:
    """Apply the agent ClusterRoles (stash-sidecar, stash-backup-job, ...): ours, so forced."""
    for role in agent_cluster_roles():
        await ctx.kube.apply(CLUSTERROLES, role, field_manager=FIELD_MANAGER, force=True)


def _image_inputs(settings: OperatorSettings) -> dict[str, str]:
    return {
        "STASH_DOCKER_REGISTRY": settings.docker_registry,
        "STASH_DOCKER_IMAGE": settings.image,
        "STASH_IMAGE_TAG": settings.image_tag,
        "PROMETHEUS_PUSHGATEWAY_URL": settings.pushgateway_url or "",
    }


def _first(spec: object, *fields: str) -> str:
    """The first of `fields` that the provider's spec sets, as text ("" when none)."""
    return next((str(v) for f in fields if (v := getattr(spec, f, None))), "")


def repository_inputs(repo: Repository | None) -> dict[str, str]:
    """§5.5 repository variables from a Repository."""
    if repo is None:
        return {}
    backend = repo.spec.backend if repo.spec else None
    provider = backend.provider() if backend else ""
    where = getattr(backend, provider) if backend and provider else None
    ns = str(repo.metadata.namespace)
    return {
        "REPOSITORY_NAME": str(repo.metadata.name),
        "REPOSITORY_NAMESPACE": ns,
        "REPOSITORY_PROVIDER": provider,
        "REPOSITORY_BUCKET": _first(where, "bucket", "container"),
        "REPOSITORY_PREFIX": _first(where, "prefix"),
        "REPOSITORY_ENDPOINT": _first(where, "endpoint", "url"),
        "REPOSITORY_REGION": _first(where, "region"),
        "REPOSITORY_INSECURE_TLS": str(bool(getattr(where, "insecure_tls", None))).lower(),
        "REPOSITORY_SECRET_NAME": (backend.storage_secret_name if backend else None) or "",
        "REPOSITORY_SECRET_NAMESPACE": ns,
        "MAX_CONNECTIONS": _first(where, "max_connections") or "0",
    }


def target_inputs(target: BackupTarget | RestoreTarget | None, ns: str) -> dict[str, str]:
    """§5.5 target variables from a BackupTarget / RestoreTarget."""
    ref = (target.ref if target else None) or TargetRef()
    mounts = (target.volume_mounts if target else None) or []
    backup = target if isinstance(target, BackupTarget) else None
    paths = (backup.paths if backup else None) or []
    return {
        "TARGET_KIND": ref.kind or "",
        "TARGET_NAME": ref.name or "",
        "TARGET_NAMESPACE": ref.namespace or ns,
        "TARGET_PATHS": ",".join(paths) or "/stash-data",
        "TARGET_MOUNT_PATH": mounts[0].mount_path if mounts else "/stash-data",
        "EXCLUDE_PATTERNS": ",".join((backup.exclude if backup else None) or []),
        "DRIVER_ARGS": " ".join((target.args if target else None) or []),
    }


def _rule_inputs(rules: list[Rule], hostname: str) -> dict[str, str]:
    """§5.5 restore variables from the rule `hostname` follows (`contract.restorerules`);
    all empty when no rule is for it (the step then finds nothing to restore)."""
    rule = rule_for_host(rules, hostname) or Rule()
    return {
        "SOURCE_HOSTNAME": rule.source_host or "",
        "RESTORE_PATHS": ",".join(rule.paths or []),
        "RESTORE_SNAPSHOTS": ",".join(rule.snapshots or []),
        "INCLUDE_PATTERNS": ",".join(rule.include or []),
        "EXCLUDE_PATTERNS": ",".join(rule.exclude or []),
    }


async def _task_and_functions(
    ctx: ControllerContext, task_name: str
) -> tuple[JSON, dict[str, JSON]]:
    try:
        task = await ctx.kube.get(TASKS, task_name)
    except NotFound:
        raise LookupError(f"Task {task_name} does not exist") from None
    names = list(dict.fromkeys(s["name"] for s in (task.get("spec") or {}).get("steps") or []))

    async def function(name: str) -> JSON:
        try:
            return await ctx.kube.get(FUNCTIONS, name)
        except NotFound:
            raise LookupError(
                f"Function {name} (a step of Task {task_name}) does not exist"
            ) from None

    # The steps' Functions are fetched at once, not one round trip after another.
    found = await asyncio.gather(*(function(n) for n in names))
    functions = dict(zip(names, found, strict=True))
    return task, functions


async def ensure_backup_executor(
    ctx: ControllerContext,
    session: BackupSession,
    invoker: BackupConfiguration,
    ref: TargetRef,
    index: int,
) -> tuple[bool, str]:
    """Make sure something will back up target `index` (`ref`) of `session`."""
    ns, name = str(session.metadata.namespace), str(session.metadata.name)
    spec = invoker.spec
    if spec is None:
        return False, f"BackupConfiguration {ns}/{invoker.metadata.name} has no spec"
    if not is_job_model(invoker):
        sa = await workload_service_account(ctx, ref, ns)
        await ensure_binding(ctx, ns, sa, "stash-sidecar")
        problem = await grant_repository_access(ctx, invoker, sa)
        if problem:
            return False, problem
        return True, f"the stash sidecar in {ref.kind} {ns}/{ref.name} runs this backup"
    app = await app_target(ctx, spec.target.ref if spec.target else None, ns, "backup")
    if isinstance(app, str):
        return False, app
    try:
        task, functions = await _task_and_functions(
            ctx, _task_name(spec.task, app.task or "pvc-backup")
        )
    except LookupError as exc:
        return False, str(exc)
    runtime = spec.runtime_settings or RuntimeSettings()
    pod = runtime.pod or PodRuntimeSettings()
    sa, problem = await agent_account(ctx, invoker, runtime, "stash-backup-job")
    problem = problem or await grant_repository_access(ctx, invoker, sa)
    if problem:
        return False, problem
    retention = spec.retention_policy
    repository = ctx.repository(spec.repository, ns)
    inputs = {
        **repository_inputs(repository),
        **target_inputs(spec.target, ns),
        **_image_inputs(ctx.settings),
        "NAMESPACE": ns,
        "BACKUP_SESSION": name,
        "INVOKER_KIND": invoker.kind,
        "INVOKER_NAME": str(invoker.metadata.name),
        "HOSTNAME": (spec.target.alias if spec.target else None) or "host-0",
        "ENABLE_CACHE": str(not (spec.temp_dir and spec.temp_dir.disable_caching)).lower(),
        "RETENTION_KEEP_LAST": str(retention.keep_last or 0),
        "RETENTION_PRUNE": str(bool(retention.prune)).lower(),
        "RETENTION_DRY_RUN": str(bool(retention.dry_run)).lower(),
        **app.inputs,
    }
    job = job_name("stash-backup", name, index)
    ok, message = await _submit_job(
        ctx,
        ns,
        dict(
            name=job,
            namespace=ns,
            task=task,
            functions=functions,
            inputs=inputs,
            invoker_params={**app.params, **_task_params(spec.task)},
            labels=dict(session.metadata.labels or {}),
            owner=_owner(session),
            service_account=sa,
            run_as_user=_run_as(pod, 65535),
            pod_settings={
                "nodeSelector": pod.node_selector,
                "tolerations": pod.tolerations,
                "affinity": pod.affinity,
            },
            container_settings=runtime.container.to_wire() if runtime.container else None,
            backend_volume=local_backend(repository, LOCAL_VOLUME),
            extra_env=app.env,
        ),
    )
    if not ok:
        return False, message
    return True, f"Job {ns}/{job} runs this backup"


async def ensure_restore_executor(
    ctx: ControllerContext, rs: RestoreSession, index: int = 0
) -> tuple[bool, str, int]:
    """Jobs (and PVCs from volumeClaimTemplates) for a job-model RestoreSession (or member
    `index` of a RestoreBatch, as `stash.contract.batches.restore_members` reads it); returns
    (ok, message, hosts)."""
    ns, name = str(rs.metadata.namespace), str(rs.metadata.name)
    spec = rs.spec or RestoreSessionSpec()
    target = spec.target or RestoreTarget()
    templates = target.volume_claim_templates or []
    replicas = int(target.replicas or 1) if templates else 1
    app = await app_target(ctx, target.ref, ns, "restore")
    if isinstance(app, str):
        return False, app, replicas
    try:
        task, functions = await _task_and_functions(
            ctx, _task_name(spec.task, app.task or "pvc-restore")
        )
    except LookupError as exc:
        return False, str(exc), replicas
    runtime = spec.runtime_settings or RuntimeSettings()
    pod = runtime.pod or PodRuntimeSettings()
    sa, problem = await agent_account(ctx, rs, runtime, "stash-restore-job")
    problem = problem or await grant_repository_access(ctx, rs, sa)
    if problem:
        return False, problem, replicas
    repository = ctx.repository(spec.repository, ns)
    common = {
        **repository_inputs(repository),
        **target_inputs(target, ns),
        **_image_inputs(ctx.settings),
        "NAMESPACE": ns,
        "RESTORE_SESSION": name,
        "INVOKER_KIND": rs.kind,
        "INVOKER_NAME": name,
        "TARGET_APP_REPLICAS": str(replicas),
        **app.inputs,
    }
    rules = target.rules or spec.rules or []
    for ordinal in range(replicas):
        claim = await _create_claims(ctx, rs, templates, ordinal)
        host = job_host(target.alias, ordinal if templates else None)
        inputs = {
            **common,
            **_rule_inputs(rules, host),
            "TARGET_NAME": claim or ((target.ref.name if target.ref else None) or ""),
            "HOSTNAME": host,
            "POD_ORDINAL": str(ordinal),
        }
        ok, message = await _submit_job(
            ctx,
            ns,
            dict(
                name=job_name("stash-restore", name, index, ordinal if templates else None),
                namespace=ns,
                task=task,
                functions=functions,
                inputs=inputs,
                invoker_params={**app.params, **_task_params(spec.task)},
                labels={
                    "app.kubernetes.io/component": "stash-restore",
                    "app.kubernetes.io/managed-by": GROUP,
                },
                owner=_owner(rs),
                service_account=sa,
                run_as_user=_run_as(pod, 0),
                extra_env=[{"name": "POD_ORDINAL", "value": str(ordinal)}, *app.env],
                container_settings=runtime.container.to_wire() if runtime.container else None,
                backend_volume=local_backend(repository, LOCAL_VOLUME),
            ),
        )
        if not ok:
            return False, message, replicas
    return True, f"{replicas} restore Job(s) created", replicas


async def _create_claims(
    ctx: ControllerContext,
    rs: RestoreSession,
    templates: list[PersistentVolumeClaimTemplate],
    ordinal: int,
) -> str:
    """Create the PVCs of host `ordinal` from the templates; the first one's name."""
    claim = ""
    for tmpl in templates:
        pvc = envsubst(
            {
                "metadata": tmpl.metadata.to_wire() if tmpl.metadata else {},
                "spec": tmpl.spec or {},
            },
            {"POD_ORDINAL": str(ordinal)},
        )
        pvc["metadata"]["ownerReferences"] = [_owner(rs)]
        claim = claim or pvc["metadata"]["name"]
        with contextlib.suppress(Conflict):
            await ctx.kube.create(PVCS, pvc, str(rs.metadata.namespace))
    return claim


async def workload_service_account(ctx: ControllerContext, ref: TargetRef, ns: str) -> str:
    """The ServiceAccount of the workload `ref` names (`default` when unknown)."""
    cache = ctx.workloads.get(str(ref.kind))
    obj = cache.get(f"{ref.namespace or ns}/{ref.name}") if cache is not None else None
    return str((pod_spec_of(obj) if obj else {}).get("serviceAccountName") or "default")


def _task_name(task: TaskRef | None, default: str) -> str:
    return (task.name if task else None) or default


def _task_params(task: TaskRef | None) -> dict[str, str]:
    """The invoker's `task.params` as variables (operator inputs win over them)."""
    return {p.name: p.value for p in (task.params if task else None) or []}


async def _submit_job(ctx: ControllerContext, ns: str, spec: dict[str, Any]) -> tuple[bool, str]:
    """Build the Job (`build_job(**spec)`) and create it. An existing Job of that name
    is success only when it is ours: controlled by the same session (owner uid)."""
    spec["labels"] = {**spec["labels"], LABEL_MANAGED_BY: GROUP}  # the operator watches these
    try:
        job = build_job(**spec)
    except (KeyError, ValueError) as exc:
        return False, str(exc)
    job["metadata"]["annotations"] = {JOB_HOST_ANNOTATION: spec["inputs"].get("HOSTNAME", "")}
    try:
        await ctx.kube.create(JOBS, job, ns)
    except Conflict:
        try:
            existing = await ctx.kube.get(JOBS, spec["name"], ns)
        except KubeError as exc:
            return False, f"Job {ns}/{spec['name']} exists but cannot be read: {exc.message}"
        why = job_conflict(existing, spec["owner"])
        return why is None, why or ""
    except KubeError as exc:
        return False, f"creating Job {ns}/{spec['name']}: {exc.message or exc}"
    return True, ""


def _run_as(pod: PodRuntimeSettings, default: int) -> int:
    """runtimeSettings.pod.securityContext.runAsUser, else the model's default (0 counts)."""
    value = (pod.security_context or {}).get("runAsUser")
    return default if value is None else int(value)


def _owner(obj: BackupSession | RestoreSession) -> JSON:
    return {
        "apiVersion": obj.api_version,
        "kind": obj.kind,
        "name": obj.metadata.name,
        "uid": obj.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
