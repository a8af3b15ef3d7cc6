"""Test-side helpers for the admission webhook: objects a user would write, and a probe
that waits until the apiserver really calls a freshly registered webhook."""

from __future__ import annotations

import asyncio

from stash.api import KINDS
from stash.kube.client import JSON, Kube, KubeError, Resource
from tests.support.cluster import eventually

WORKLOAD_API = {"ReplicationController": "v1"}


def resource_of(obj: JSON) -> Resource:
    """The Resource of a Stash object, from its kind."""
    info = KINDS[obj["kind"]]
    return Resource(info.group, info.version, info.plural, info.kind)


async def create(kube: Kube, res: Resource | None, obj: JSON, namespace: str) -> JSON:
    """Create `obj` in `namespace` (the Resource is derived for Stash kinds)."""
    return await kube.create(res or resource_of(obj), obj, namespace)


def _ref(kind: str, name: str) -> JSON:
    return {"apiVersion": WORKLOAD_API.get(kind, "apps/v1"), "kind": kind, "name": name}


def repository(name: str = "repo") -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "storageSecretName": "repo-secret",
                "local": {"mountPath": "/safe/data", "hostPath": {"path": "/var/backups"}},
            }
        },
    }


def backup_configuration(kind: str, name: str = "web", schedule: str = "*/5 * * * *") -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": f"{name}-backup"},
        "spec": {
            "schedule": schedule,
            "repository": {"name": "repo"},
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            "target": {
                "ref": {
                    "apiVersion": WORKLOAD_API.get(kind, "apps/v1"),
                    "kind": kind,
                    "name": name,
                },
                "paths": ["/data"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
        },
    }


def restore_session(kind: str, name: str = "web") -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": f"{name}-restore"},
        "spec": {
            "repository": {"name": "repo"},
            "target": {
                "ref": {
                    "apiVersion": WORKLOAD_API.get(kind, "apps/v1"),
                    "kind": kind,
                    "name": name,
                },
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "rules": [{"paths": ["/data"]}],
            },
        },
    }


def workload(kind: str, name: str = "web", replicas: int = 0) -> JSON:
    """A workload with an `app` container and a `data` volume (no pods unless asked)."""
    labels = {"app": name}
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    spec: JSON = {"template": pod}
    if kind == "ReplicationController":
        spec["selector"] = labels
    else:
        spec["selector"] = {"matchLabels": labels}
    if kind != "DaemonSet":
        spec["replicas"] = replicas
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": WORKLOAD_API.get(kind, "apps/v1"),
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


async def _delete(kube: Kube, obj: JSON, namespace: str) -> None:
    await kube.delete(resource_of(obj), obj["metadata"]["name"], namespace)


async def wait_until_active(kube: Kube, namespace: str, timeout: float = 30) -> None:
    """Wait until the apiserver calls both the validating and the mutating webhook.

    The apiserver picks up new webhook configurations asynchronously; until then objects
    are admitted without them. Probe objects are deleted again.
    """
    probe_repo = repository("webhook-probe")
    probe_repo["spec"]["wipeOut"] = True  # refused by a live validating webhook

    async def validating_active() -> bool:
        try:
            await create(kube, None, probe_repo, namespace)
        except KubeError as exc:
            if exc.status == 422 and "denied the request" in exc.message:
                return True
            raise
        await _delete(kube, probe_repo, namespace)
        await asyncio.sleep(0.3)
        return False

    probe_rs = restore_session("Deployment", "webhook-probe")
    probe_rs["spec"]["rules"] = probe_rs["spec"]["target"].pop(
        "rules"
    )  # moved back by a live mutator

    async def mutating_active() -> bool:
        stored = await create(kube, None, probe_rs, namespace)
        await _delete(kube, probe_rs, namespace)
        if stored["spec"].get("target", {}).get("rules"):
            return True
        await asyncio.sleep(0.3)
        return False

    await eventually(validating_active, timeout=timeout, what="the validating webhook to be called")
    await eventually(mutating_active, timeout=timeout, what="the mutating webhook to be called")
