"""The built-in Functions and Tasks the operator creates at start-up (§5.5):
`pvc-backup`, `pvc-restore`, `update-status` Functions and `pvc-backup`, `pvc-restore`
Tasks, and the database addons (`addons`, §9). Their args come from
`stash.contract.steps`, the same table the agent parses, so the Job the operator builds
and the command the agent runs cannot drift. Existing objects with these names are left
alone (a user may have customised them). `install_builtins()` applies them with the
agent ClusterRoles when a replica starts leading.
"""

from __future__ import annotations

import logging

from stash.contract.resources import FUNCTIONS, TASKS
from stash.contract.steps import pvc_backup_args, pvc_restore_args, update_status_args
from stash.controllers.addons import addon_functions, addon_tasks
from stash.controllers.context import ControllerContext
from stash.controllers.provisioning import FIELD_MANAGER, install_cluster_roles
from stash.kube.client import JSON, Conflict, KubeError

log = logging.getLogger(__name__)

STASH_IMAGE = "${STASH_DOCKER_REGISTRY}/${STASH_DOCKER_IMAGE}:${STASH_IMAGE_TAG}"
LABELS = {"app.kubernetes.io/managed-by": "stash.appscode.com"}


def _function(name: str, args: list[str], mounts: list[JSON]) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "Function",
        "metadata": {"name": name, "labels": dict(LABELS)},
        "spec": {"image": STASH_IMAGE, "command": ["stash"], "args": args, "volumeMounts": mounts},
    }


def builtin_functions() -> list[JSON]:
    """The Functions of the PVC Tasks (variables resolved when a Job is built)."""
    target = {"name": "${targetVolume}", "mountPath": "${TARGET_MOUNT_PATH}"}
    return [
        _function("pvc-backup", pvc_backup_args(), [target]),
        _function("update-status", update_status_args(), []),
        _function("pvc-restore", pvc_restore_args(), [target]),
        *addon_functions(),
    ]


def builtin_tasks() -> list[JSON]:
    """Tasks `pvc-backup` = [pvc-backup, update-status] and `pvc-restore` = [pvc-restore]."""
    out = {"name": "outputDir", "value": "/stash-tmp/output"}
    vol = {"name": "targetVolume", "value": "stash-volume"}
    pvc_volume = {"name": "stash-volume", "persistentVolumeClaim": {"claimName": "${TARGET_NAME}"}}
    return [
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "Task",
            "metadata": {"name": "pvc-backup", "labels": dict(LABELS)},
            "spec": {
                "steps": [
                    {"name": "pvc-backup", "params": [out, vol]},
                    {"name": "update-status", "params": [out]},
                ],
                "volumes": [pvc_volume],
            },
        },
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "Task",
            "metadata": {"name": "pvc-restore", "labels": dict(LABELS)},
            "spec": {
                "steps": [{"name": "pvc-restore", "params": [out, vol]}],
                "volumes": [pvc_volume],
            },
        },
        *addon_tasks(),
    ]


async def install_builtins(ctx: ControllerContext) -> None:
    """Agent ClusterRoles (unless a chart owns them), and the built-in Functions/Tasks
    unless customised (§5.5). Failures are logged; the operator goes on."""
    if ctx.settings.manage_agent_roles:
        try:
            await install_cluster_roles(ctx)
        except KubeError as exc:
            log.error(
                "installing the agent ClusterRoles failed: %s (when a Helm chart owns "
                "them, run with STASH_MANAGE_AGENT_ROLES=false)",
                exc,
            )
    for obj, res in [
        *((f, FUNCTIONS) for f in builtin_functions()),
        *((t, TASKS) for t in builtin_tasks()),
    ]:
        try:
            # Not forced: a field someone else changed (a customised built-in) makes
            # this a Conflict and the object is left as it is.
            await ctx.kube.apply(res, obj, field_manager=FIELD_MANAGER)
        except Conflict:
            log.info("%s %s is customised; left as it is", res.kind, obj["metadata"]["name"])
        except KubeError as exc:
            log.error("creating %s %s failed: %s", res.kind, obj["metadata"]["name"], exc)
