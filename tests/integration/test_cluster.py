"""The test control plane is the real thing: schema validation, watches and 410 Gone,
admission webhooks called by the apiserver, RBAC, controllers, garbage collection."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from stash.pki import issue_ca, issue_serving_cert
from stash_dev import ControlPlane
from stash_dev.pki import write_pair
from tests.support.cluster import etcd_compact, eventually, token_client

pytestmark = pytest.mark.cluster


def _deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]},
            },
        },
    }


async def test_backupconfiguration_schema_violation_is_rejected_with_field_path(
    kube: client.ApiClient, stash_crds: list[str], namespace: str
) -> None:
    api = client.CustomObjectsApi(kube)
    bad = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "bad"},
        "spec": {
            "schedule": "*/5 * * * *",
            "repository": {"name": "repo"},
            "retentionPolicy": {"name": "keep", "keepLast": "five", "prune": True},
        },
    }
    with pytest.raises(client.ApiException) as err:
        await api.create_namespaced_custom_object(
            "stash.appscode.com", "v1beta1", namespace, "backupconfigurations", bad
        )
    assert err.value.status == 422
    assert "spec.retentionPolicy.keepLast" in err.value.body
    good = json.loads(json.dumps(bad))
    good["metadata"]["name"] = "good"
    good["spec"]["retentionPolicy"]["keepLast"] = 5
    created = await api.create_namespaced_custom_object(
        "stash.appscode.com", "v1beta1", namespace, "backupconfigurations", good
    )
    assert created["spec"]["retentionPolicy"]["keepLast"] == 5


async def _watch_lines(
    kube: client.ApiClient, namespace: str, rv: str, timeout: int
) -> AsyncIterator[dict[str, Any]]:
    core = client.CoreV1Api(kube)
    resp = await core.list_namespaced_config_map(
        namespace,
        watch=True,
        resource_version=rv,
        timeout_seconds=timeout,
        _preload_content=False,
    )
    try:
        async for line in resp.content:
            if line.strip():
                yield json.loads(line)
    finally:
        resp.release()


@pytest.mark.serial  # it compacts etcd under every watcher
async def test_watch_sees_changes_and_expired_resource_version_is_gone(
    kube: client.ApiClient, control_plane: ControlPlane, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    listing = await core.list_namespaced_config_map(namespace)
    rv0 = listing.metadata.resource_version
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"a": "1"})
    await core.create_namespaced_config_map(namespace, cm)
    await core.patch_namespaced_config_map("w", namespace, {"data": {"a": "2"}})
    await core.delete_namespaced_config_map("w", namespace)

    seen: list[tuple[str, str]] = []
    async for ev in _watch_lines(kube, namespace, rv0, timeout=5):
        if ev["object"].get("metadata", {}).get("name") == "w":
            seen.append((ev["type"], ev["object"]["data"]["a"]))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]

    await asyncio.to_thread(etcd_compact, control_plane.etcd_url)
    errors = [ev async for ev in _watch_lines(kube, namespace, rv0, timeout=5)]
    assert errors, "a watch from a compacted resourceVersion must not be silent"
    assert errors[0]["type"] == "ERROR"
    assert errors[0]["object"]["code"] == 410


@pytest.fixture
async def tls_webhook(tmp_path: Path) -> AsyncIterator[tuple[str, bytes, list[dict[str, Any]]]]:
    """An aiohttp HTTPS server on 127.0.0.1 that annotates every Deployment it is sent."""
    now, day = dt.datetime.now(dt.UTC), dt.timedelta(days=1)
    ca = issue_ca("webhook-test-ca", now, day)
    crt, key = write_pair(
        issue_serving_cert(ca, ["localhost"], ["127.0.0.1"], now, day), tmp_path, "tls"
    )
    calls: list[dict[str, Any]] = []

    async def mutate(request: web.Request) -> web.Response:
        review = await request.json()
        calls.append(review)
        patch = [{"op": "add", "path": "/metadata/annotations", "value": {"mutated-by": "test"}}]
        return web.json_response(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        )

    app = web.Application()
    app.router.add_post("/mutate", mutate)
    runner = web.AppRunner(app)
    await runner.setup()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}/mutate", ca.cert_pem, calls
    await runner.cleanup()


async def test_apiserver_calls_mutating_webhook_over_tls(
    kube: client.ApiClient,
    namespace: str,
    tls_webhook: tuple[str, bytes, list[dict[str, Any]]],
) -> None:
    url, ca_pem, calls = tls_webhook
    name = f"test-{uuid.uuid4().hex[:8]}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "deployments.test.stash.dev",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["deployments"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }
    adm = client.AdmissionregistrationV1Api(kube)
    await adm.create_mutating_webhook_configuration(config)
    try:
        apps = client.AppsV1Api(kube)

        async def created() -> Any:
            # The apiserver picks new webhook configurations up asynchronously.
            try:
                d = await apps.create_namespaced_deployment(namespace, _deployment("hooked", 0))
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                d = await apps.read_namespaced_deployment("hooked", namespace)
            if (d.metadata.annotations or {}).get("mutated-by") == "test":
                return d
            await apps.delete_namespaced_deployment("hooked", namespace)
            await asyncio.sleep(0.5)
            return None

        stored = await eventually(created, timeout=30, what="the webhook's patch")
        assert stored.metadata.annotations["mutated-by"] == "test"
        assert calls and calls[-1]["request"]["kind"]["kind"] == "Deployment"
        assert calls[-1]["request"]["namespace"] == namespace
    finally:
        await adm.delete_mutating_webhook_configuration(name)


async def test_rbac_denies_unbound_user_until_role_binding(
    kube: client.ApiClient, control_plane: ControlPlane, namespace: str
) -> None:
    alice = token_client(
        control_plane.server, control_plane.ca_file, control_plane.user_token("alice")
    )
    try:
        with pytest.raises(client.ApiException) as err:
            await client.CoreV1Api(alice).list_namespaced_pod(namespace)
        assert err.value.status == 403
        assert 'User "alice" cannot list resource "pods"' in json.loads(err.value.body)["message"]

        rbac = client.RbacAuthorizationV1Api(kube)
        await rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            },
        )
        await rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "alice-reads-pods"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "pod-reader",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
                ],
            },
        )

        async def allowed() -> bool:
            try:
                await client.CoreV1Api(alice).list_namespaced_pod(namespace)
            except client.ApiException as exc:
                if exc.status == 403:
                    return False
                raise
            return True

        await eventually(allowed, timeout=15, what="alice allowed after the RoleBinding")
        with pytest.raises(client.ApiException) as err:
            await client.CoreV1Api(alice).list_namespaced_secret(namespace)
        assert err.value.status == 403
    finally:
        await alice.close()


async def test_deployment_pods_run_and_are_garbage_collected(
    kube: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    await apps.create_namespaced_deployment(namespace, _deployment("web", replicas=2))

    async def running_pods() -> list[Any]:
        pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
        ok = [p for p in pods if p.status.phase == "Running" and p.spec.node_name]
        return ok if len(ok) == 2 else []

    pods = await eventually(running_pods, timeout=60, what="2 Running pods")
    assert all(p.metadata.owner_references[0].kind == "ReplicaSet" for p in pods)
    rs = (await apps.list_namespaced_replica_set(namespace)).items
    assert len(rs) == 1 and rs[0].status.ready_replicas == 2

    await apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")

    async def all_gone() -> bool:
        rs = (await apps.list_namespaced_replica_set(namespace)).items
        pods = (await core.list_namespaced_pod(namespace)).items
        return not rs and not pods

    await eventually(all_gone, timeout=60, what="ReplicaSet and Pods garbage-collected")


async def test_namespace_deletion_completes(kube: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    await apps.create_namespaced_deployment(name, _deployment("web", replicas=1))
    await core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"})
    )

    async def pod_running() -> bool:
        pods = (await core.list_namespaced_pod(name)).items
        return any(p.status.phase == "Running" for p in pods)

    await eventually(pod_running, timeout=60, what="a Running pod")
    await core.delete_namespace(name)

    async def gone() -> bool:
        try:
            await core.read_namespace(name)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    await eventually(gone, timeout=90, what=f"namespace {name} deleted")


async def test_claims_are_provisioned_and_job_pods_wait_for_a_runner(
    kube: client.ApiClient, namespace: str
) -> None:
    core, batch = client.CoreV1Api(kube), client.BatchV1Api(kube)
    await core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )

    async def bound() -> Any:
        pvc = await core.read_namespaced_persistent_volume_claim("data", namespace)
        return pvc if pvc.status.phase == "Bound" else None

    pvc = await eventually(bound, timeout=30, what="the claim bound by the stand-in provisioner")
    pv = await core.read_persistent_volume(pvc.spec.volume_name)
    assert Path(pv.spec.host_path.path).is_dir()
    job = {
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                }
            },
        },
    }
    await batch.create_namespaced_job(namespace, job)

    async def waiting_pod() -> Any:
        pods = (await core.list_namespaced_pod(namespace, label_selector="job-name=once")).items
        if pods and pods[0].status.container_statuses:
            return pods[0]
        return None

    pod = await eventually(waiting_pod, timeout=60, what="the Job's pod reported by the kubelet")
    assert pod.status.phase == "Pending", "no container ran, so the pod must not look Running"
    assert pod.status.container_statuses[0].state.waiting is not None
    assert not (await batch.read_namespaced_job("once", namespace)).status.succeeded
