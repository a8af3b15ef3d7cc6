"""Pod Security `restricted`: in a namespace that enforces it, the apiserver admits the
pods of a sidecar-injected (restricted-compliant) Deployment and the operator's backup and
restore Job pods; a restore Job that runs as root (to restore file ownership) needs
`baseline`, and with a non-root user it is admitted in `restricted` too."""

from __future__ import annotations

import datetime as dt

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, EVENTS, NAMESPACES, PODS, PVCS, SECRETS
from tests.integration.operator.conftest import OperatorFactory, secret
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

RESTRICTED_CONTAINER: JSON = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _deployment() -> JSON:
    labels = {"app": "web"}
    return {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "busybox",
                            "securityContext": RESTRICTED_CONTAINER,
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def _repository() -> JSON:
    # hostPath volumes are not allowed under `restricted`: the repository is on a claim
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo"},
        "spec": {
            "backend": {
                "local": {
                    "persistentVolumeClaim": {"claimName": "repo-pvc"},
                    "mountPath": "/safe/data",
                },
                "storageSecretName": "repo-secret",
            }
        },
    }


async def _restricted(kube: Kube, namespace: str) -> None:
    await kube.patch(
        NAMESPACES,
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )


async def _pods_with(kube: Kube, namespace: str, prefix: str) -> list[JSON]:
    pods = (await kube.list(PODS, namespace)).get("items") or []
    return [p for p in pods if p["metadata"]["name"].startswith(prefix)]


async def _refusals(kube: Kube, namespace: str) -> list[str]:
    events = (await kube.list(EVENTS, namespace)).get("items") or []
    return [e.get("message", "") for e in events if e.get("reason") == "FailedCreate"]


async def test_restricted_namespace_admits_sidecar_pods_and_backup_job_pods(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await _restricted(rawkube, namespace)
    await run_operator()
    await rawkube.create(SECRETS, secret(), namespace)
    await rawkube.create(REPOSITORIES, _repository(), namespace)
    await rawkube.create(DEPLOYMENTS, _deployment(), namespace)
    claim = {
        "metadata": {"name": "data-pvc"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await rawkube.create(PVCS, claim, namespace)
    target = {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
    target |= {"paths": ["/data"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    for name, spec in (
        ("web-backup", {"target": target}),
        (
            "pvc-backup",
            {
                "task": {"name": "pvc-backup"},
                "target": {
                    "ref": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "name": "data-pvc",
                    },
                    "paths": ["/source/data"],
                    "volumeMounts": [{"name": "data-pvc", "mountPath": "/source/data"}],
                },
            },
        ),
    ):
        body = {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": name},
            "spec": {"schedule": "0 * * * *", "repository": {"name": "repo"}, **spec},
        }
        body["spec"]["retentionPolicy"] = {"name": "keep", "keepLast": 3, "prune": True}
        await rawkube.create(BACKUPCONFIGURATIONS, body, namespace)

    async def injected_pod() -> JSON | None:
        for pod in await _pods_with(rawkube, namespace, "web-"):
            if any(c["name"] == "stash" for c in pod["spec"]["containers"]):
                return pod
        return None

    await eventually(injected_pod, timeout=60, what="an admitted pod with the stash sidecar")

    async def ready() -> JSON | None:
        bc = await rawkube.get(BACKUPCONFIGURATIONS, "pvc-backup", namespace)
        return bc if (bc.get("status") or {}).get("phase") == "Ready" else None

    bc = await eventually(ready, timeout=30, what="the PVC BackupConfiguration Ready")
    session = await create_backup_session(rawkube, bc, dt.datetime.now(dt.UTC))

    async def job_pod() -> list[JSON] | None:
        refused = await _refusals(rawkube, namespace)
        assert not refused, refused
        return await _pods_with(rawkube, namespace, f"stash-backup-{session}") or None

    await eventually(job_pod, timeout=60, what="the backup Job's pod to be admitted")


async def test_restore_job_as_root_needs_baseline_and_a_non_root_one_passes_restricted(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await _restricted(rawkube, namespace)
    await run_operator()
    await rawkube.create(SECRETS, secret(), namespace)
    await rawkube.create(REPOSITORIES, _repository(), namespace)
    for name, pod_settings in (("as-root", None), ("as-user", {"runAsUser": 1000})):
        spec: JSON = {
            "task": {"name": "pvc-restore"},
            "repository": {"name": "repo"},
            "target": {
                "volumeMounts": [{"name": f"{name}-data", "mountPath": "/source/data"}],
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": f"{name}-data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
                "rules": [{"paths": ["/source/data"]}],
            },
        }
        if pod_settings:
            spec["runtimeSettings"] = {"pod": {"securityContext": pod_settings}}
        body = {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": name},
            "spec": spec,
        }
        await rawkube.create(RESTORESESSIONS, body, namespace)

    async def user_pod() -> list[JSON] | None:
        return await _pods_with(rawkube, namespace, "stash-restore-as-user") or None

    await eventually(user_pod, timeout=60, what="the non-root restore Job's pod")

    async def root_refused() -> list[str] | None:
        refused = [m for m in await _refusals(rawkube, namespace) if "restricted" in m]
        return refused or None

    refused = await eventually(root_refused, timeout=60, what="the root restore pod refused")
    assert "runAsNonRoot" in refused[0] or "runAsUser" in refused[0]
    assert not await _pods_with(rawkube, namespace, "stash-restore-as-root")
