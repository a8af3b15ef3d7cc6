"""Types shared by several Stash kinds (stash-api.md §1.1, §6.1).

What it is for: targets and their references, restore rules, task references,
retention policies, runtime settings, scratch-dir settings, retries, hook handlers and
status conditions — the building blocks of BackupConfiguration, RestoreSession, the
batches and BackupBlueprint.

Not for: decisions about these values (phases, rule matching, retention arguments);
those are pure functions elsewhere that take these models as input.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stash.api.base import Bool, Int32, Int64, StashModel, Time, crd_default
from stash.api.k8s import (
    IntOrString,
    KubeList,
    KubeObject,
    LocalObjectReference,
    PersistentVolumeClaimTemplate,
    Quantity,
    StringMap,
    VolumeMount,
)

__all__ = [
    "BackupHooks",
    "BackupTarget",
    "Condition",
    "ContainerRuntimeSettings",
    "Driver",
    "EmptyDirSettings",
    "ExecAction",
    "ExecutionOrder",
    "FormEntry",
    "HTTPGetAction",
    "HTTPHeader",
    "HTTPPostAction",
    "Handler",
    "HookExecution",
    "HookExecutionPolicy",
    "IONiceSettings",
    "NiceSettings",
    "ObjectReference",
    "Param",
    "PodRuntimeSettings",
    "PostBackupHook",
    "PostRestoreHook",
    "RestoreHooks",
    "RestoreTarget",
    "RetentionPolicy",
    "RetryConfig",
    "Rule",
    "RuntimeSettings",
    "TCPSocketAction",
    "TargetRef",
    "TaskRef",
]

HookExecutionPolicy = Literal["Always", "OnSuccess", "OnFailure", "OnFinalRetryFailure"]
"""When a postBackup hook runs, judged on the target's final phase."""

Driver = Literal["Restic", "VolumeSnapshotter"]
"""What takes the backup: restic, or CSI VolumeSnapshots. Unset = `Restic`."""

ExecutionOrder = Literal["Parallel", "Sequential"]
"""How the members of a batch run. Unset = `Parallel`."""


class TargetRef(StashModel):
    """The object a backup or restore acts on; empty namespace = the invoker's namespace.

    All fields are optional in the CRD, as upstream (`omitempty` everywhere).
    """

    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class ObjectReference(StashModel):
    """A `{name, namespace}` reference (empty namespace = the referring object's)."""

    name: str
    namespace: str | None = None


class Param(StashModel):
    """A `{name, value}` parameter of a task step or of an invoker's task reference."""

    name: str
    value: str


class TaskRef(StashModel):
    """The Task an invoker runs (job model) and the parameters it overrides."""

    name: str
    params: list[Param] | None = None


class RetentionPolicy(StashModel):
    """Which snapshots to keep; maps one to one onto `restic forget` flags.

    `prune` is always serialised, also when False, as upstream does.
    """

    name: str
    keep_last: Int64 | None = None
    keep_hourly: Int64 | None = None
    keep_daily: Int64 | None = None
    keep_weekly: Int64 | None = None
    keep_monthly: Int64 | None = None
    keep_yearly: Int64 | None = None
    keep_tags: list[str] | None = None
    prune: Bool = False
    dry_run: Bool | None = None


class Rule(StashModel):
    """Which snapshots or paths a restoring host restores, and from which source host."""

    target_hosts: list[str] | None = None
    source_host: str | None = None
    snapshots: list[str] | None = None
    paths: list[str] | None = None
    exclude: list[str] | None = None
    include: list[str] | None = None


class BackupTarget(StashModel):
    """`spec.target` of a BackupConfiguration (or of a BackupBatch member)."""

    alias: str | None = None
    ref: TargetRef | None = None
    paths: list[str] | None = None
    volume_mounts: list[VolumeMount] | None = None
    replicas: Int32 | None = None
    snapshot_class_name: str | None = None
    exclude: list[str] | None = None
    args: list[str] | None = None


class RestoreTarget(StashModel):
    """`spec.target` of a RestoreSession (or a RestoreBatch member's target)."""

    alias: str | None = None
    ref: TargetRef | None = None
    volume_mounts: list[VolumeMount] | None = None
    replicas: Int32 | None = None
    volume_claim_templates: list[PersistentVolumeClaimTemplate] | None = None
    rules: list[Rule] | None = None
    args: list[str] | None = None


class NiceSettings(StashModel):
    """CPU scheduling priority for restic (`nice -n adjustment`)."""

    adjustment: Int32 | None = None


class IONiceSettings(StashModel):
    """I/O scheduling class and priority for restic (`ionice -c class -n classData`)."""

    class_: Int32 | None = Field(default=None, alias="class")
    class_data: Int32 | None = None


class PodRuntimeSettings(StashModel):
    """Pod-level settings for the jobs (and CronJob pods) Stash creates."""

    pod_labels: StringMap | None = None
    pod_annotations: StringMap | None = None
    node_selector: StringMap | None = None
    service_account_name: str | None = None
    service_account_annotations: StringMap | None = None
    automount_service_account_token: Bool | None = None
    node_name: str | None = None
    security_context: KubeObject | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    affinity: KubeObject | None = None
    scheduler_name: str | None = None
    tolerations: KubeList | None = None
    priority_class_name: str | None = None
    priority: Int32 | None = None
    readiness_gates: KubeList | None = None
    runtime_class_name: str | None = None
    enable_service_links: Bool | None = None
    topology_spread_constraints: KubeList | None = None


class ContainerRuntimeSettings(StashModel):
    """Container-level settings for the sidecar, init-container and job containers."""

    resources: KubeObject | None = None
    liveness_probe: KubeObject | None = None
    readiness_probe: KubeObject | None = None
    lifecycle: KubeObject | None = None
    security_context: KubeObject | None = None
    nice: NiceSettings | None = None
    ionice: IONiceSettings | None = None
    env_from: KubeList | None = None
    env: KubeList | None = None


class RuntimeSettings(StashModel):
    """Pod and container settings applied to whatever runs the backup or restore."""

    pod: PodRuntimeSettings | None = None
    container: ContainerRuntimeSettings | None = None


class EmptyDirSettings(StashModel):
    """The scratch directory (`tempDir`): an emptyDir mounted at /stash-tmp."""

    medium: str | None = None
    size_limit: Quantity | None = None
    disable_caching: Bool | None = None


class RetryConfig(StashModel):
    """How often, and how long after a failure, a failed backup is retried."""

    max_retry: Int32 | None = None
    delay: str | None = None


class ExecAction(StashModel):
    """Run a command in a container of the executor pod."""

    command: list[str] | None = None


class HTTPHeader(StashModel):
    """One HTTP request header."""

    name: str
    value: str


class HTTPGetAction(StashModel):
    """An HTTP GET; status 200-399 is success. Empty host = the executor pod's IP."""

    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class FormEntry(StashModel):
    """One form field of an HTTP POST hook."""

    key: str | None = None
    values: list[str] | None = None


class HTTPPostAction(StashModel):
    """An HTTP POST with a body or a form; the body may be a template."""

    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None
    body: str | None = None
    form: list[FormEntry] | None = None


class TCPSocketAction(StashModel):
    """A TCP connect; success when the connection opens."""

    port: IntOrString
    host: str | None = None


class Handler(StashModel):
    """A hook action (kmodules prober Handler): exactly one of the four actions."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    http_post: HTTPPostAction | None = None
    tcp_socket: TCPSocketAction | None = None
    container_name: str | None = None
    timeout_seconds: Int32 | None = None
    """Ours: how long the hook may take (unset = 30s; docs/hooks.md)."""


class PostBackupHook(Handler):
    """A postBackup hook: a Handler plus when to run it (unset = `Always`)."""

    execution_policy: HookExecutionPolicy | None = Field(
        default=None, json_schema_extra=crd_default("Always")
    )


class PostRestoreHook(Handler):
    """A postRestore hook: a Handler plus when to run it (unset = `Always`).

    Restores are never retried, so `OnFinalRetryFailure` is not offered here.
    """

    execution_policy: Literal["Always", "OnSuccess", "OnFailure"] | None = Field(
        default=None, json_schema_extra=crd_default("Always")
    )


class BackupHooks(StashModel):
    """Hooks around a backup (per target, or global for a BackupBatch)."""

    pre_backup: Handler | None = None
    post_backup: PostBackupHook | None = None


class RestoreHooks(StashModel):
    """Hooks around a restore (per target, or global for a RestoreBatch)."""

    pre_restore: Handler | None = None
    post_restore: PostRestoreHook | None = None


class HookExecution(StashModel):
    """Ours: one hook run for a host, with its (bounded) output (docs/hooks.md)."""

    name: Literal["preBackup", "postBackup", "preRestore", "postRestore"]
    phase: Literal["Succeeded", "Failed", "Skipped"]
    message: str | None = None
    output: str | None = None


class Condition(StashModel):
    """A kmodules status condition (type, status, reason, message, ...)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    severity: str | None = None
    last_transition_time: Time
    reason: str | None = None
    message: str | None = None
    observed_generation: Int64 | None = None
