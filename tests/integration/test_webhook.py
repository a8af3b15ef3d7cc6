"""The admission webhook called by the real apiserver over TLS.

Each test runs a `WebhookServer` on 127.0.0.1 with its own CA, registered (URL client
config + caBundle) for its own namespace only, and talks to the apiserver as a user would.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stash.contract.resources import REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Conflict, Kube, KubeError, Resource
from stash.kube.resources import (
    DAEMONSETS,
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    STATEFULSETS,
)
from stash.settings import OperatorSettings
from stash.webhook.registration import MUTATING, VALIDATING
from stash.webhook.server import WebhookServer
from stash_dev import ControlPlane
from tests.support.cluster import eventually
from tests.support.webhook import (
    backup_configuration,
    create,
    repository,
    restore_session,
    wait_until_active,
    workload,
)

pytestmark = pytest.mark.cluster

KIND_RESOURCES: dict[str, Resource] = {
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFULSETS,
    "DaemonSet": DAEMONSETS,
    "ReplicaSet": REPLICASETS,
    "ReplicationController": REPLICATIONCONTROLLERS,
}


@pytest.fixture
async def raw(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    kube = await Kube.connect(control_plane.kubeconfig)
    yield kube
    await kube.close()


def local_settings(namespace: str, **extra: Any) -> OperatorSettings:
    return OperatorSettings(
        webhook_host="127.0.0.1",
        webhook_port=0,
        webhook_config_name=f"stash-test-{namespace}",
        namespace="stash-system",
        image_tag="test",
        **extra,
    )


@pytest.fixture
async def webhook(raw: Kube, stash_crds: list[str], namespace: str) -> AsyncIterator[WebhookServer]:
    server = WebhookServer(
        local_settings(namespace),
        raw,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
    )
    await server.start()
    await wait_until_active(raw, namespace)
    yield server
    await server.stop()


async def reapply(raw: Kube, res: Resource, manifest: JSON, namespace: str) -> JSON:
    """PUT `manifest` over the stored object, as `kubectl replace` does (retry on conflicts
    with the controllers' status writes)."""
    for _ in range(10):
        current = await raw.get(res, manifest["metadata"]["name"], namespace)
        body = copy.deepcopy(manifest)
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            return await raw.replace(res, body, namespace)
        except Conflict:
            await asyncio.sleep(0.2)
    raise AssertionError(f"could not replace {manifest['metadata']['name']}: conflicts")


def containers(obj: JSON, field: str = "containers") -> list[JSON]:
    spec: JSON = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
    result: list[JSON] = spec.get(field) or []
    return result


async def test_deployment_gets_one_sidecar_and_reapplying_keeps_one(
    raw: Kube, webhook: WebhookServer, namespace: str
) -> None:
    await create(raw, REPOSITORIES, repository(), namespace)
    await create(raw, None, backup_configuration("Deployment"), namespace)
    manifest = workload("Deployment")
    stored = await create(raw, DEPLOYMENTS, manifest, namespace)

    names = [c["name"] for c in containers(stored)]
    assert names == ["app", "stash"]
    sidecar = containers(stored)[1]
    assert sidecar["image"] == "stash/stash:test"
    assert sidecar["command"] == ["stash"]
    assert sidecar["args"] == [
        "run-backup",
        "--invoker-name=web-backup",
        "--invoker-kind=BackupConfiguration",
        "--target-name=web",
        f"--target-namespace={namespace}",
        "--target-kind=Deployment",
        "--enable-cache=true",
        "--max-connections=0",
        "--metrics-enabled=true",
        "--pushgateway-url=",
    ]
    assert [e["name"] for e in sidecar["env"]] == ["NODE_NAME", "POD_NAME", "POD_NAMESPACE"]
    assert sidecar["volumeMounts"] == [
        {"name": "stash-tmp-dir", "mountPath": "/stash-tmp"},
        {"name": "data", "mountPath": "/data"},
        {"name": "stash-local", "mountPath": "/safe/data"},
    ]
    volumes = {v["name"] for v in stored["spec"]["template"]["spec"]["volumes"]}
    assert volumes == {"data", "stash-tmp-dir", "stash-local"}

    # kubectl apply / a GitOps sync re-sends the manifest without the sidecar
    replaced = await reapply(raw, DEPLOYMENTS, manifest, namespace)
    assert [c["name"] for c in containers(replaced)] == ["app", "stash"]
    assert replaced["spec"]["template"] == stored["spec"]["template"]

    # no rollout: once the controller has seen the update there is still one ReplicaSet
    async def observed() -> bool:
        d = await raw.get(DEPLOYMENTS, "web", namespace)
        return bool(d.get("status", {}).get("observedGeneration") == d["metadata"]["generation"])

    await eventually(observed, timeout=30, what="the Deployment controller to observe the update")
    replica_sets, _ = await raw.list_all(REPLICASETS, namespace)
    assert len(replica_sets) == 1


@pytest.mark.parametrize(
    "kind", ["StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"]
)
async def test_other_workloads_get_one_sidecar(
    raw: Kube, webhook: WebhookServer, namespace: str, kind: str
) -> None:
    await create(raw, None, backup_configuration(kind), namespace)
    res = KIND_RESOURCES[kind]
    stored = await create(raw, res, workload(kind), namespace)
    assert [c["name"] for c in containers(stored)] == ["app", "stash"]
    assert f"--target-kind={kind}" in containers(stored)[1]["args"]

    updated = copy.deepcopy(workload(kind))
    updated["metadata"]["labels"] = {"touched": "yes"}
    replaced = await reapply(raw, res, updated, namespace)
    assert [c["name"] for c in containers(replaced)] == ["app", "stash"]


async def test_restore_session_prepends_stash_init(
    raw: Kube, webhook: WebhookServer, namespace: str
) -> None:
    await create(raw, RESTORESESSIONS, restore_session("Deployment"), namespace)
    manifest = workload("Deployment")
    manifest["spec"]["template"]["spec"]["initContainers"] = [{"name": "setup", "image": "busybox"}]
    stored = await create(raw, DEPLOYMENTS, manifest, namespace)
    inits = containers(stored, "initContainers")
    assert [c["name"] for c in inits] == ["stash-init", "setup"]
    assert inits[0]["args"][:3] == [
        "restore",
        "--invoker-kind=RestoreSession",
        "--invoker-name=web-restore",
    ]
    assert inits[0]["securityContext"]["runAsUser"] == 0


async def expect_denied(raw: Kube, res: Resource | None, obj: JSON, namespace: str) -> str:
    with pytest.raises(KubeError) as err:
        await create(raw, res, obj, namespace)
    assert err.value.status == 422, err.value
    assert "denied the request" in err.value.message
    return err.value.message


async def test_invalid_objects_are_refused_with_the_webhooks_message(
    raw: Kube, webhook: WebhookServer, namespace: str
) -> None:
    msg = await expect_denied(
        raw, None, backup_configuration("Deployment", schedule="61 * * * *"), namespace
    )
    assert "spec.schedule: invalid cron schedule" in msg

    negative = backup_configuration("Deployment")
    negative["spec"]["retentionPolicy"]["keepLast"] = -1
    msg = await expect_denied(raw, None, negative, namespace)
    assert "spec.retentionPolicy.keepLast: must not be negative, got -1" in msg

    two_catch_all = restore_session("Deployment")
    two_catch_all["spec"]["target"]["rules"] = [{"paths": ["/data"]}, {"snapshots": ["latest"]}]
    msg = await expect_denied(raw, RESTORESESSIONS, two_catch_all, namespace)
    assert "only one rule may leave targetHosts empty" in msg

    wipe_local = repository()
    wipe_local["spec"]["wipeOut"] = True
    msg = await expect_denied(raw, REPOSITORIES, wipe_local, namespace)
    assert "spec.wipeOut: wipeOut is not supported for the local backend" in msg

    templated = backup_configuration("Deployment")
    body = '{"text": "{{ .Namespace }}\n{{ .Status.Phase | shout }}"}'
    templated["spec"]["hooks"] = {"postBackup": {"httpPost": {"port": 80, "body": body}}}
    msg = await expect_denied(raw, None, templated, namespace)
    assert (
        "spec.hooks.postBackup.httpPost.body: template error at line 2, column 20: "
        'function "shout" not defined'
    ) in msg


async def test_metadata_only_updates_pass_even_for_objects_that_no_longer_validate(
    raw: Kube, stash_crds: list[str], namespace: str
) -> None:
    # Admitted before the webhook existed (or by an older, laxer version).
    repo = repository()
    repo["spec"]["wipeOut"] = True
    await create(raw, REPOSITORIES, repo, namespace)
    server = WebhookServer(
        local_settings(namespace),
        raw,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
    )
    await server.start()
    try:
        await wait_until_active(raw, namespace)
        # an object's own label no longer opts it out of validation (its author could
        # skip the rules that protect others); only a namespace's labels do
        labelled = repository("labelled")
        labelled["metadata"]["labels"] = {"stash.appscode.com/webhook": "disabled"}
        labelled["spec"]["wipeOut"] = True
        msg = await expect_denied(raw, REPOSITORIES, labelled, namespace)
        assert "wipeOut is not supported for the local backend" in msg

        stored = await raw.get(REPOSITORIES, "repo", namespace)
        stored["metadata"]["labels"] = {"owner": "me"}
        stored["metadata"]["finalizers"] = ["example.com/keep"]
        updated = await raw.replace(REPOSITORIES, stored, namespace)
        assert updated["metadata"]["finalizers"] == ["example.com/keep"]
        updated["metadata"]["finalizers"] = []
        await raw.replace(REPOSITORIES, updated, namespace)
    finally:
        await server.stop()


async def test_deployment_is_admitted_when_the_webhook_is_down(
    raw: Kube, stash_crds: list[str], namespace: str
) -> None:
    server = WebhookServer(
        local_settings(namespace),
        raw,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
    )
    await server.start()
    try:
        await wait_until_active(raw, namespace)
        await create(raw, None, backup_configuration("Deployment"), namespace)
        await server.stop(unregister_webhooks=False)  # the process died; registrations stay
        await raw.get(MUTATING, server.settings.webhook_config_name)  # still registered
        started = asyncio.get_running_loop().time()
        stored = await create(raw, DEPLOYMENTS, workload("Deployment"), namespace)
        assert [c["name"] for c in containers(stored)] == ["app"]  # admitted, not injected
        assert asyncio.get_running_loop().time() - started < 10
    finally:
        for res in (MUTATING, VALIDATING):
            await raw.delete(res, server.settings.webhook_config_name)


async def test_pod_mode_injects_pods_and_leaves_the_template_alone(
    raw: Kube, stash_crds: list[str], namespace: str
) -> None:
    server = WebhookServer(
        local_settings(namespace, injection_mode="pod"),
        raw,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
    )
    await server.start()
    try:
        await wait_until_active(raw, namespace)
        await create(raw, None, backup_configuration("Deployment"), namespace)
        manifest = workload("Deployment", replicas=1)
        stored = await create(raw, DEPLOYMENTS, manifest, namespace)
        assert [c["name"] for c in containers(stored)] == ["app"]  # no drift for GitOps

        async def injected_pod() -> JSON | None:
            pods, _ = await raw.list_all(PODS, namespace, label_selector="app=web")
            return pods[0] if pods else None

        pod = await eventually(injected_pod, timeout=60, what="a pod of the Deployment")
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app", "stash"]
        assert "--target-kind=Deployment" in pod["spec"]["containers"][1]["args"]
    finally:
        await server.stop()
