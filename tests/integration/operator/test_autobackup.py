"""Auto-backup against the real control plane: an annotated Deployment gets the Repository
and BackupConfiguration its blueprint describes (named, owned and scheduled as §3.2
says) and the sidecar; changing the annotation updates them, removing it takes the
BackupConfiguration and the sidecar away and keeps the Repository; deleting the
workload deletes its objects; each bad input is a Warning Event and no object."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stash.contract.resources import BACKUPBLUEPRINTS, BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import DEPLOYMENTS, EVENTS, SECRETS
from tests.integration.operator.conftest import OperatorFactory, secret
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

ANN = "stash.appscode.com/"


def blueprint(name: str, **spec: Any) -> JSON:
    body: JSON = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBlueprint",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "s3": {
                    "endpoint": "minio.demo.svc:443",
                    "bucket": "b",
                    "prefix": "stash/${TARGET_NAMESPACE}/${TARGET_KIND}/${TARGET_NAME}",
                },
                "storageSecretName": "repo-secret",
            },
            "schedule": "*/5 * * * *",
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        },
    }
    body["spec"].update(spec)
    return body


def annotated(name: str = "web", **annotations: str) -> JSON:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": "busybox"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


@pytest.fixture
async def blueprints(rawkube: Kube, namespace: str) -> AsyncIterator[str]:
    """A per-test blueprint name prefix; the cluster-scoped blueprints go afterwards."""
    prefix = f"bp-{namespace[-6:]}"
    yield prefix
    listing = await rawkube.list(BACKUPBLUEPRINTS)
    for bp in listing["items"]:
        if bp["metadata"]["name"].startswith(prefix):
            with contextlib.suppress(NotFound):
                await rawkube.delete(BACKUPBLUEPRINTS, bp["metadata"]["name"])


async def _get(kube: Kube, res: Any, name: str, ns: str) -> JSON | None:
    try:
        return await kube.get(res, name, ns)
    except NotFound:
        return None


def _sidecar_args(deploy: JSON) -> list[str] | None:
    for c in deploy["spec"]["template"]["spec"]["containers"]:
        if c["name"] == "stash":
            return list(c["args"])
    return None


async def _events(kube: Kube, ns: str, name: str, reason: str) -> list[JSON]:
    items = (await kube.list(EVENTS, ns))["items"]
    return [
        e for e in items if e["involvedObject"].get("name") == name and e.get("reason") == reason
    ]


async def test_s1_annotated_deployment_gets_its_objects_and_sidecar(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, blueprints: str
) -> None:
    await run_operator()
    bp = f"{blueprints}-wl"
    await rawkube.create(BACKUPBLUEPRINTS, blueprint(bp))
    await rawkube.create(SECRETS, secret(), namespace)
    deploy = annotated(
        **{
            f"{ANN}backup-blueprint": bp,
            f"{ANN}target-paths": "/data",
            f"{ANN}volume-mounts": "data:/data",
            f"{ANN}schedule": "*/15 * * * *",
        }
    )
    created = await rawkube.create(DEPLOYMENTS, deploy, namespace)

    async def ready() -> JSON | None:
        bc = await _get(rawkube, BACKUPCONFIGURATIONS, "deployment-web", namespace)
        return bc if bc and (bc.get("status") or {}).get("phase") == "Ready" else None

    bc = await eventually(ready, timeout=30, what="BackupConfiguration deployment-web Ready")
    assert bc["spec"]["schedule"] == "*/15 * * * *"
    assert bc["spec"]["target"]["paths"] == ["/data"]
    assert bc["spec"]["target"]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    (owner,) = bc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Deployment",
        "web",
        created["metadata"]["uid"],
    )
    repo = await rawkube.get(REPOSITORIES, "deployment-web", namespace)
    assert repo["spec"]["backend"]["s3"]["prefix"] == f"stash/{namespace}/deployment/web"
    conds = {c["type"]: c["status"] for c in bc["status"]["conditions"]}
    assert all(v == "True" for v in conds.values()), conds

    async def injected() -> list[str] | None:
        return _sidecar_args(await rawkube.get(DEPLOYMENTS, "web", namespace))

    args = await eventually(injected, timeout=30, what="the sidecar")
    assert args[:3] == [
        "run-backup",
        "--invoker-name=deployment-web",
        "--invoker-kind=BackupConfiguration",
    ]
    (event,) = await _events(rawkube, namespace, "web", "AutoBackupResourcesCreationSucceeded")
    assert event["type"] == "Normal"

    # The annotation changes: the BackupConfiguration follows; the pod template does
    # not (a schedule is not part of the sidecar's hash), so no rollout.
    template = (await rawkube.get(DEPLOYMENTS, "web", namespace))["spec"]["template"]
    await rawkube.patch(
        DEPLOYMENTS,
        "web",
        {"metadata": {"annotations": {f"{ANN}schedule": "0 3 * * *"}}},
        namespace,
    )

    async def rescheduled() -> bool:
        got = await rawkube.get(BACKUPCONFIGURATIONS, "deployment-web", namespace)
        return bool(got["spec"]["schedule"] == "0 3 * * *")

    await eventually(rescheduled, timeout=30, what="the new schedule")
    live = await rawkube.get(DEPLOYMENTS, "web", namespace)
    assert live["spec"]["template"] == template  # the pods stay as they are

    # The blueprint changes: the Repository follows.
    await rawkube.patch(
        BACKUPBLUEPRINTS,
        bp,
        {"spec": {"backend": {"s3": {"prefix": "v2/${TARGET_NAME}"}}}},
    )

    async def moved() -> bool:
        got = await rawkube.get(REPOSITORIES, "deployment-web", namespace)
        return bool(got["spec"]["backend"]["s3"]["prefix"] == "v2/web")

    await eventually(moved, timeout=30, what="the Repository to follow the blueprint")

    # The annotation goes: BackupConfiguration and sidecar go, the Repository stays.
    await rawkube.patch(
        DEPLOYMENTS,
        "web",
        {"metadata": {"annotations": {f"{ANN}backup-blueprint": None}}},
        namespace,
    )

    async def removed() -> bool:
        gone = await _get(rawkube, BACKUPCONFIGURATIONS, "deployment-web", namespace) is None
        no_sidecar = _sidecar_args(await rawkube.get(DEPLOYMENTS, "web", namespace)) is None
        return gone and no_sidecar

    await eventually(removed, timeout=30, what="BackupConfiguration and sidecar removed")
    assert await _get(rawkube, REPOSITORIES, "deployment-web", namespace) is not None
    assert await _events(rawkube, namespace, "web", "AutoBackupResourcesDeletionSucceeded")


async def test_deleting_the_workload_deletes_its_objects(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, blueprints: str
) -> None:
    await run_operator()
    bp = f"{blueprints}-wl"
    await rawkube.create(BACKUPBLUEPRINTS, blueprint(bp))
    await rawkube.create(SECRETS, secret(), namespace)
    ann = {
        f"{ANN}backup-blueprint": bp,
        f"{ANN}target-paths": "/data",
        f"{ANN}volume-mounts": "data:/data",
    }
    await rawkube.create(DEPLOYMENTS, annotated(**ann), namespace)
    await eventually(
        lambda: _get(rawkube, BACKUPCONFIGURATIONS, "deployment-web", namespace),
        timeout=30,
        what="the BackupConfiguration",
    )
    await rawkube.delete(DEPLOYMENTS, "web", namespace, propagation="Foreground")

    async def collected() -> bool:
        bc = await _get(rawkube, BACKUPCONFIGURATIONS, "deployment-web", namespace)
        repo = await _get(rawkube, REPOSITORIES, "deployment-web", namespace)
        return bc is None and repo is None

    await eventually(collected, timeout=60, what="the objects garbage-collected")


BAD_INPUTS = [
    pytest.param(
        {
            "backup-blueprint": "{bp}-missing",
            "target-paths": "/data",
            "volume-mounts": "data:/data",
        },
        'BackupBlueprint "{bp}-missing" does not exist',
        id="unknown-blueprint",
    ),
    pytest.param(
        {"backup-blueprint": "{bp}", "target-paths": "/data", "volume-mounts": "data=/data"},
        f'{ANN}volume-mounts: entry "data=/data" is not name:mountPath[:subPath]',
        id="malformed-volume-mounts",
    ),
    pytest.param(
        {"backup-blueprint": "{bp}", "target-paths": "/cache", "volume-mounts": "cache:/cache"},
        f'{ANN}volume-mounts: volume "cache" is not in the Deployment\'s pod template',
        id="mount-the-pod-lacks",
    ),
    pytest.param(
        {"backup-blueprint": "{bp}-app", "target-paths": "/data", "volume-mounts": "data:/data"},
        "${TARGET_APP_VERSION} has no value for a Deployment",
        id="unexpandable-variable",
    ),
]


@pytest.mark.parametrize(("annotations", "message"), BAD_INPUTS)
async def test_bad_input_is_an_event_and_no_object(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    blueprints: str,
    annotations: dict[str, str],
    message: str,
) -> None:
    await run_operator()
    bp = f"{blueprints}-wl"
    await rawkube.create(BACKUPBLUEPRINTS, blueprint(bp))
    app_prefix = {"s3": {"endpoint": "e", "bucket": "b", "prefix": "${TARGET_APP_VERSION}"}}
    await rawkube.create(
        BACKUPBLUEPRINTS,
        blueprint(f"{bp}-app", backend={**app_prefix, "storageSecretName": "repo-secret"}),
    )
    ann = {f"{ANN}{k}": v.replace("{bp}", bp) for k, v in annotations.items()}
    await rawkube.create(DEPLOYMENTS, annotated(**ann), namespace)

    async def warned() -> list[JSON]:
        return await _events(rawkube, namespace, "web", "AutoBackupResourcesCreationFailed")

    (event,) = await eventually(warned, timeout=30, what="the Warning Event")
    assert event["type"] == "Warning"
    assert message.replace("{bp}", bp) in event["message"], event["message"]
    assert "nothing was created or changed" in event["message"]
    assert (await rawkube.list(BACKUPCONFIGURATIONS, namespace))["items"] == []
    assert (await rawkube.list(REPOSITORIES, namespace))["items"] == []
    deploy = await rawkube.get(DEPLOYMENTS, "web", namespace)
    assert _sidecar_args(deploy) is None and deploy["metadata"]["generation"] == 1


async def test_two_blueprints_producing_the_same_repository(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, blueprints: str
) -> None:
    """A stand-alone PVC may list several blueprints; two that land on one backend
    location would mix their snapshots, so neither is made."""
    from stash.kube.resources import PVCS

    await run_operator()
    await rawkube.create(BACKUPBLUEPRINTS, blueprint(f"{blueprints}-a"))
    await rawkube.create(BACKUPBLUEPRINTS, blueprint(f"{blueprints}-b"))
    claim = {
        "metadata": {
            "name": "data",
            "annotations": {f"{ANN}backup-blueprint": f"{blueprints}-a,{blueprints}-b"},
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await rawkube.create(PVCS, claim, namespace)

    async def warned() -> list[JSON]:
        return await _events(rawkube, namespace, "data", "AutoBackupResourcesCreationFailed")

    (event,) = await eventually(warned, timeout=30, what="the Warning Event")
    assert "resolve to the same backend location" in event["message"]
    assert (await rawkube.list(BACKUPCONFIGURATIONS, namespace))["items"] == []
    assert (await rawkube.list(REPOSITORIES, namespace))["items"] == []
