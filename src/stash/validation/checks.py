"""Rules shared by several kinds: schedules, durations, retention, hooks, mounts, targets,
cross-namespace references, task parameters, restore rules and backends.

Not for: deciding which rules apply to which kind (`kinds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stash.api import Repository
from stash.api.backupconfiguration import BackupConfigurationTemplateSpec
from stash.api.common import BackupHooks, Handler, RestoreHooks, RetentionPolicy, Rule, TaskRef
from stash.api.repository import PROVIDERS, Backend
from stash.api.restoresession import RestoreTargetSpec
from stash.contract.hookrender import template_problem
from stash.contract.names import TMP_MOUNT
from stash.contract.taskparams import OPERATOR_PARAMS
from stash.contract.workloads import runs_in_workload
from stash.restic.flags import extra_args_problem
from stash.validation.podsecurity import check_pod_security
from stash.validation.report import Report, ValidationFacts
from stash.validation.scalars import parse_duration, schedule_problem


def check_schedule(r: Report, path: str, schedule: str | None) -> None:
    if schedule is None or not schedule.strip():
        return
    problem = schedule_problem(schedule)
    if problem:
        r.error(path, f"invalid cron schedule: {problem}")


def check_duration(r: Report, path: str, value: str | None, *, positive: bool = True) -> None:
    if value is None or value == "":
        return
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        r.error(path, str(exc))
        return
    if seconds < 0 or (positive and seconds == 0):
        r.error(path, f'must be a positive duration, got "{value}"')


def check_non_negative(r: Report, path: str, value: int | None) -> None:
    if value is not None and value < 0:
        r.error(path, f"must not be negative, got {value}")


_KEEP_FIELDS = (
    "keepLast",
    "keepHourly",
    "keepDaily",
    "keepWeekly",
    "keepMonthly",
    "keepYearly",
)


def check_retention(r: Report, path: str, policy: RetentionPolicy | None) -> None:
    if policy is None:
        return
    wire = policy.to_wire()
    for key in _KEEP_FIELDS:
        check_non_negative(r, f"{path}.{key}", wire.get(key))
    for i, tag in enumerate(policy.keep_tags or []):
        if not tag.strip():
            r.error(f"{path}.keepTags[{i}]", "must not be empty")
    if not any(wire.get(k) for k in _KEEP_FIELDS) and not policy.keep_tags:
        r.warn(
            f"{path} ({policy.name}) has no keep rule, so every snapshot is kept "
            "and retention removes nothing"
        )


def check_handler(r: Report, path: str, handler: Handler | None) -> None:
    if handler is None:
        return
    actions = [a for a in ("exec", "http_get", "http_post", "tcp_socket") if getattr(handler, a)]
    if len(actions) != 1:
        r.error(path, "exactly one of exec, httpGet, httpPost or tcpSocket is required")
    if handler.timeout_seconds is not None and handler.timeout_seconds <= 0:
        r.error(f"{path}.timeoutSeconds", f"must be positive, got {handler.timeout_seconds}")
    templates: list[tuple[str, str]] = []
    if handler.http_post is not None and handler.http_post.body:
        templates.append((f"{path}.httpPost.body", handler.http_post.body))
    if handler.exec is not None:
        for i, part in enumerate(handler.exec.command or []):
            templates.append((f"{path}.exec.command[{i}]", part))
    for where, text in templates:
        if "{{" not in text:
            continue
        problem = template_problem(text)
        if problem is not None:
            r.error(
                where,
                f"template error at line {problem.line}, column "
                f"{problem.column}: {problem.message} (docs/hooks.md lists the subset)",
            )


def check_hooks(r: Report, path: str, hooks: BackupHooks | RestoreHooks | None) -> None:
    if isinstance(hooks, BackupHooks):
        check_handler(r, f"{path}.preBackup", hooks.pre_backup)
        check_handler(r, f"{path}.postBackup", hooks.post_backup)
    elif isinstance(hooks, RestoreHooks):
        check_handler(r, f"{path}.preRestore", hooks.pre_restore)
        check_handler(r, f"{path}.postRestore", hooks.post_restore)


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def check_volume_mounts(
    r: Report, path: str, mounts: Sequence[Any] | None, facts: ValidationFacts
) -> None:
    seen: dict[str, int] = {}
    local_path = _local_mount_path(facts.repository)
    for i, mount in enumerate(mounts or []):
        mp = mount.mount_path.rstrip("/") or "/"
        at = f"{path}[{i}].mountPath"
        if not mp.startswith("/"):
            r.error(at, f'"{mount.mount_path}" must be an absolute path')
        if _under(mp, TMP_MOUNT):
            r.error(at, f'"{mount.mount_path}" clashes with the agent\'s scratch dir {TMP_MOUNT}')
        if local_path and mp == local_path.rstrip("/"):
            r.error(at, f'"{mount.mount_path}" is where the local backend is mounted')
        if mp in seen:
            r.error(at, f'"{mount.mount_path}" is already mounted by {path}[{seen[mp]}]')
        seen.setdefault(mp, i)


def _local_mount_path(repository: Repository | None) -> str | None:
    backend = repository.spec.backend if repository and repository.spec else None
    return backend.local.mount_path if backend and backend.local else None


def check_cross_namespace(
    r: Report,
    path: str,
    namespace: str | None,
    kind: str | None,
    ref_namespace: str | None,
    task_name: str | None,
    driver: str | None,
) -> None:
    """§1.3: a PVC or a workload backed up by a sidecar must be in the invoker's namespace;
    AppBindings and job-model tasks (e.g. `kubedump*`) may reach across."""
    if not ref_namespace or not namespace or ref_namespace == namespace:
        return
    if kind == "PersistentVolumeClaim" or runs_in_workload(driver, task_name, kind):
        r.error(
            path,
            f'a {kind} target must be in the invoker\'s namespace "{namespace}", '
            f'not "{ref_namespace}"',
        )


def check_rules(r: Report, path: str, rules: Sequence[Rule] | None) -> None:
    """§1.1: at most one catch-all rule, a host in only one rule, snapshots xor paths."""
    catch_all: int | None = None
    owner: dict[str, int] = {}
    for i, rule in enumerate(rules or []):
        at = f"{path}[{i}]"
        if rule.snapshots and rule.paths:
            r.error(at, "snapshots and paths are mutually exclusive; set only one")
        if not rule.target_hosts:
            if catch_all is not None:
                r.error(
                    f"{at}.targetHosts",
                    f"only one rule may leave targetHosts empty; {path}[{catch_all}] "
                    "already applies to every host",
                )
            else:
                catch_all = i
            continue
        for host in rule.target_hosts:
            if host in owner and owner[host] != i:
                r.error(f"{at}.targetHosts", f'host "{host}" is already in {path}[{owner[host]}]')
            owner.setdefault(host, i)


def check_backup_template(
    r: Report,
    path: str,
    spec: BackupConfigurationTemplateSpec,
    namespace: str | None,
    driver: str | None,
    facts: ValidationFacts,
) -> None:
    task_name = spec.task.name if spec.task else None
    check_task_params(r, f"{path}.task.params", spec.task)
    check_pod_security(r, path, spec.runtime_settings, facts.repository, facts.namespace_labels)
    target = spec.target
    if target is None:
        if not task_name:
            r.error(f"{path}.target", "a target (or a task) is required")
        check_hooks(r, f"{path}.hooks", spec.hooks)
        return
    ref = target.ref
    if ref is None or not ref.kind or not ref.name:
        r.error(f"{path}.target.ref", "kind and name of the object to back up are required")
    kind = ref.kind if ref else None
    if runs_in_workload(driver, task_name, kind):
        if not target.paths:
            r.error(f"{path}.target.paths", f"at least one path is required for a {kind}")
        if not target.volume_mounts:
            r.error(
                f"{path}.target.volumeMounts",
                "mount the volume(s) holding the paths; the sidecar sees nothing else",
            )
    for i, p in enumerate(target.paths or []):
        if not p.startswith("/"):
            r.error(f"{path}.target.paths[{i}]", f'"{p}" must be an absolute path')
        elif target.volume_mounts and not any(
            _under(p, m.mount_path) for m in target.volume_mounts
        ):
            r.warn(f'{path}.target.paths[{i}] "{p}" is not under any of target.volumeMounts')
    check_volume_mounts(r, f"{path}.target.volumeMounts", target.volume_mounts, facts)
    check_restic_args(r, f"{path}.target.args", "backup", target.args)
    ref_namespace = ref.namespace if ref else None
    check_cross_namespace(
        r, f"{path}.target.ref.namespace", namespace, kind, ref_namespace, task_name, driver
    )
    check_hooks(r, f"{path}.hooks", spec.hooks)


def check_restore_template(
    r: Report,
    path: str,
    spec: RestoreTargetSpec,
    namespace: str | None,
    driver: str | None,
    facts: ValidationFacts,
) -> None:
    task_name = spec.task.name if spec.task else None
    check_task_params(r, f"{path}.task.params", spec.task)
    check_pod_security(r, path, spec.runtime_settings, facts.repository, facts.namespace_labels)
    target = spec.target
    if target is None:
        if not task_name:
            r.error(f"{path}.target", "a target (or a task) is required")
        check_hooks(r, f"{path}.hooks", spec.hooks)
        return
    ref = target.ref
    if (ref is None or not ref.kind or not ref.name) and not target.volume_claim_templates:
        r.error(f"{path}.target.ref", "kind and name (or volumeClaimTemplates) are required")
    kind = ref.kind if ref else None
    if runs_in_workload(driver, task_name, kind) and not target.volume_mounts:
        r.error(f"{path}.target.volumeMounts", f"mount the volume(s) to restore into the {kind}")
    check_volume_mounts(r, f"{path}.target.volumeMounts", target.volume_mounts, facts)
    check_rules(r, f"{path}.target.rules", target.rules)
    check_restic_args(r, f"{path}.target.args", "restore", target.args)
    ref_namespace = ref.namespace if ref else None
    check_cross_namespace(
        r, f"{path}.target.ref.namespace", namespace, kind, ref_namespace, task_name, driver
    )
    check_hooks(r, f"{path}.hooks", spec.hooks)


def check_task_params(r: Report, path: str, task: TaskRef | None) -> None:
    """An invoker may not set a variable the operator computes (the agent image, the
    Repository, the session...): the operator's value always wins, so say so."""
    for i, param in enumerate((task.params if task else None) or []):
        if param.name in OPERATOR_PARAMS:
            r.error(
                f"{path}[{i}].name",
                f"{param.name} is set by the operator (stash-api.md §5.5) and may not be "
                "overridden by an invoker; remove it",
            )


def check_restic_args(r: Report, path: str, command: str, args: Sequence[str] | None) -> None:
    """`args` reach restic: only documented flags that change what is read or written."""
    problem = extra_args_problem(command, args or ())
    if problem:
        r.error(path, problem)


def check_repository_ref(r: Report, path: str, name: str | None, driver: str | None) -> None:
    if driver in (None, "Restic") and not name:
        r.error(path, "the Repository to use is required")


def check_wipe_out_scope(r: Report, path: str, provider: str, spec: Any) -> None:
    """wipeOut deletes everything under the repository's prefix (a REST server's URL
    path): without one it would delete the whole bucket, other repositories included."""
    if provider == "rest":
        url = str(getattr(spec, "url", None) or "")
        scope = url.split("://", 1)[-1].partition("/")[2]
        field = f"{path}.rest.url"
    else:
        scope = str(getattr(spec, "prefix", None) or "")
        field = f"{path}.{provider}.prefix"
    if not scope.strip("/"):
        r.error(
            field,
            "wipeOut deletes everything under the repository's prefix, so a prefix other "
            f'than "/" is required (without one it would delete the whole {provider} '
            "storage, other repositories included)",
        )


def check_backend(r: Report, path: str, backend: Backend | None, wipe_out: bool | None) -> None:
    if backend is None:
        r.error(path, f"a backend is required: one of {', '.join(PROVIDERS)}")
        return
    chosen = [p for p in PROVIDERS if getattr(backend, p) is not None]
    if not chosen:
        r.error(path, f"exactly one backend is required: one of {', '.join(PROVIDERS)}")
    elif len(chosen) > 1:
        r.error(path, f"exactly one backend may be set, found {' and '.join(chosen)}")
    if not backend.storage_secret_name:
        r.error(f"{path}.storageSecretName", "required: the Secret holding RESTIC_PASSWORD")
    for provider in chosen:
        if wipe_out and provider in ("local", "b2"):
            r.error("spec.wipeOut", f"wipeOut is not supported for the {provider} backend")
        elif wipe_out:
            check_wipe_out_scope(r, path, provider, getattr(backend, provider))
    if backend.local is not None:
        mp = backend.local.mount_path
        at = f"{path}.local.mountPath"
        if not mp.startswith("/"):
            r.error(at, f'"{mp}" must be an absolute path')
        elif mp.rstrip("/") == "/stash" or mp.startswith("/stash/"):
            r.error(at, f'"{mp}" may not be /stash or under /stash/ (reserved for Stash)')
        elif _under(mp, TMP_MOUNT):
            r.error(at, f'"{mp}" clashes with the agent\'s scratch dir {TMP_MOUNT}')
        sources = list(backend.local.volume_source())
        if len(sources) != 1:
            r.error(
                f"{path}.local",
                "exactly one volume source (hostPath, nfs, persistentVolumeClaim, ...) "
                f"is required, found {len(sources)}",
            )
    if backend.rest is not None and not (backend.rest.url or "").startswith(
        ("http://", "https://")
    ):
        r.error(f"{path}.rest.url", "an http:// or https:// URL of the REST server is required")
