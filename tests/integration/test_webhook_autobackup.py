"""One admission, one rollout: an annotated Deployment gets its auto-backup sidecar in the
admission that creates it (the BackupConfiguration does not exist yet), and the object
the operator then creates is the one the sidecar was injected for, so the operator has
nothing to change in the pod template. A bad annotation admits the workload unchanged,
with a warning."""

from __future__ import annotations

import pytest

from stash.api import BackupConfiguration, Repository
from stash.contract.resources import BACKUPBLUEPRINTS, BACKUPCONFIGURATIONS, REPOSITORIES
from stash.inject import desired_workload
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash.webhook.server import WebhookServer
from tests.integration.operator.conftest import OperatorFactory, rawkube, run_operator  # noqa: F401
from tests.integration.test_webhook import containers, local_settings, raw, webhook  # noqa: F401
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster
ANN = "stash.appscode.com/"


def _blueprint(name: str) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBlueprint",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "local": {
                    "hostPath": {"path": "/var/backups"},
                    "mountPath": "/safe/${TARGET_NAME}",
                },
                "storageSecretName": "repo-secret",
            },
            "schedule": "*/5 * * * *",
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        },
    }


def _deployment(annotations: dict[str, str]) -> JSON:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": {
            "replicas": 0,
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


async def test_annotated_deployment_is_injected_in_its_admission_and_not_rolled_again(
    raw: Kube,  # noqa: F811
    webhook: WebhookServer,  # noqa: F811
    run_operator: OperatorFactory,  # noqa: F811
    namespace: str,
) -> None:
    bp = f"bp-{namespace[-6:]}"
    await raw.create(BACKUPBLUEPRINTS, _blueprint(bp))
    try:
        await raw.create(
            SECRETS,
            {"metadata": {"name": "repo-secret"}, "stringData": {"RESTIC_PASSWORD": "x"}},
            namespace,
        )
        annotations = {
            f"{ANN}backup-blueprint": bp,
            f"{ANN}target-paths": "/data",
            f"{ANN}volume-mounts": "data:/data",
        }
        stored = await raw.create(DEPLOYMENTS, _deployment(annotations), namespace)
        names = [c["name"] for c in containers(stored)]
        assert names == ["app", "stash"], "the sidecar comes in the creating admission"
        sidecar = containers(stored)[1]
        assert sidecar["args"][1:3] == [
            "--invoker-name=deployment-web",
            "--invoker-kind=BackupConfiguration",
        ]
        # The planned Repository (not created yet) brought its local backend volume.
        assert {"name": "stash-local", "mountPath": "/safe/web"} in sidecar["volumeMounts"]

        # The operator runs with the webhook's image and Pushgateway settings, as one
        # deployment of both would.
        await run_operator(
            image_tag="test", pushgateway_url=local_settings(namespace).pushgateway_url
        )

        async def ready() -> JSON | None:
            try:
                bc = await raw.get(BACKUPCONFIGURATIONS, "deployment-web", namespace)
            except NotFound:
                return None
            return bc if (bc.get("status") or {}).get("phase") == "Ready" else None

        bc = await eventually(ready, timeout=30, what="BackupConfiguration deployment-web Ready")
        live = await raw.get(DEPLOYMENTS, "web", namespace)
        assert live["spec"]["template"] == stored["spec"]["template"]
        repo = Repository.model_validate(await raw.get(REPOSITORIES, "deployment-web", namespace))
        # What the operator's workload reconciler computes from the stored objects equals
        # what the admission stored: it has nothing to patch, so there is no second rollout.
        desired = desired_workload(
            {**live, "kind": "Deployment", "apiVersion": "apps/v1"},
            BackupConfiguration.model_validate(bc),
            None,
            local_settings(namespace),
            {f"{namespace}/deployment-web": repo},
        )
        # (The apiserver writes `hostPath.type: ""` into the stored volume; that default
        # is no change to the pods.)
        want, have = desired.workload["spec"]["template"], live["spec"]["template"]
        assert want["metadata"] == have["metadata"]  # the sidecar's hash annotation
        assert want["spec"]["containers"] == have["spec"]["containers"]
        assert desired.workload["metadata"]["annotations"] == live["metadata"]["annotations"]
    finally:
        await raw.delete(BACKUPBLUEPRINTS, bp)


async def test_a_bad_annotation_admits_the_workload_unchanged_with_a_warning(
    raw: Kube,  # noqa: F811
    webhook: WebhookServer,  # noqa: F811
    namespace: str,
) -> None:
    annotations = {
        f"{ANN}backup-blueprint": "no-such-blueprint",
        f"{ANN}target-paths": "/data",
        f"{ANN}volume-mounts": "data:/data",
    }
    manifest = _deployment(annotations)
    stored = await raw.create(DEPLOYMENTS, manifest, namespace)
    assert [c["name"] for c in containers(stored)] == ["app"]
    assert (
        stored["spec"]["template"]["spec"]["volumes"]
        == manifest["spec"]["template"]["spec"]["volumes"]
    )
