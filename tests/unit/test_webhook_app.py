"""The webhook application through aiohttp's test client: what the apiserver gets back."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import jsonpatch
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stash.api import BackupConfiguration, Repository, RestoreSession
from stash.settings import OperatorSettings
from stash.webhook.app import make_app
from stash.webhook.lookup import StaticLookup

SETTINGS = OperatorSettings(namespace="stash", image_tag="9.9.9")


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str = "demo",
    group: str = "apps",
    version: str = "v1",
    resource: str = "deployments",
) -> dict[str, Any]:
    kind = (obj or old or {}).get("kind", "Deployment")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "operation": operation,
            "namespace": namespace,
            "name": ((obj or old or {}).get("metadata") or {}).get("name", ""),
            "object": obj,
            "oldObject": old,
            "userInfo": {"username": "alice"},
        },
    }


def deployment(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": "nginx"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def backup_config(schedule: str = "*/5 * * * *", **extra: Any) -> dict[str, Any]:
    spec = {
        "schedule": schedule,
        "repository": {"name": "repo"},
        "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "paths": ["/data"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
        **extra,
    }
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "web-backup", "namespace": "demo"},
        "spec": spec,
    }


class FailingLookup(StaticLookup):
    """A lookup whose apiserver is unreachable."""

    async def backup_configurations(self, namespace: str) -> Sequence[BackupConfiguration]:
        raise ConnectionError("apiserver unreachable")

    async def repository(self, namespace: str, name: str) -> Repository | None:
        raise ConnectionError("apiserver unreachable")


class SlowLookup(StaticLookup):
    async def restore_sessions(self, namespace: str) -> Sequence[RestoreSession]:
        await asyncio.sleep(30)
        return []


@pytest.fixture
def lookup() -> StaticLookup:
    return StaticLookup([BackupConfiguration.model_validate(backup_config())])


@pytest.fixture
async def client(lookup: StaticLookup) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(SETTINGS, lookup))) as c:
        yield c


async def post(client: TestClient[Any, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(path, json=body)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    assert data["apiVersion"] == "admission.k8s.io/v1" and data["kind"] == "AdmissionReview"
    assert data["response"]["uid"] == body["request"]["uid"]
    return data["response"]


def apply_patch(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "patch" not in response:
        return obj
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    patched: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
    return patched


async def test_targeted_deployment_gets_exactly_one_sidecar(
    client: TestClient[Any, Any], lookup: StaticLookup
) -> None:
    resp = await post(client, "/mutate/deployments", review(deployment()))
    assert resp["allowed"] is True
    stored = apply_patch(deployment(), resp)
    names = [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]]
    assert names == ["app", "stash"]
    stored["metadata"]["uid"] = "uid-of-web"  # the apiserver stored it
    lookup.uids[("demo", "Deployment", "web")] = "uid-of-web"

    again = await post(
        client, "/mutate/deployments", review(stored, operation="UPDATE", old=stored)
    )
    assert "patch" not in again  # nothing to change: no rollout

    sent = deployment()  # kubectl replace sends the object with its uid
    sent["metadata"]["uid"] = "uid-of-web"
    reapplied = await post(
        client, "/mutate/deployments", review(sent, operation="UPDATE", old=stored)
    )
    assert apply_patch(sent, reapplied) == stored


async def test_untargeted_deployment_is_left_alone(client: TestClient[Any, Any]) -> None:
    resp = await post(client, "/mutate/deployments", review(deployment("other")))
    assert resp == {"uid": resp["uid"], "allowed": True}


async def test_deployment_owned_replicaset_is_not_injected(client: TestClient[Any, Any]) -> None:
    rs = deployment()
    rs["kind"] = "ReplicaSet"
    rs["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "u",
            "controller": True,
        }
    ]
    resp = await post(client, "/mutate/replicasets", review(rs, resource="replicasets"))
    assert "patch" not in resp


async def test_lookup_failure_admits_unchanged_with_a_warning() -> None:
    async with TestClient(TestServer(make_app(SETTINGS, FailingLookup()))) as c:
        resp = await post(c, "/mutate/deployments", review(deployment()))
    assert resp["allowed"] is True and "patch" not in resp
    assert "apiserver unreachable" in resp["warnings"][0]


async def test_slow_lookup_admits_unchanged_before_the_apiserver_times_out() -> None:
    settings = SETTINGS.model_copy(update={"webhook_timeout_seconds": 1})
    async with TestClient(TestServer(make_app(settings, SlowLookup()))) as c:
        started = asyncio.get_running_loop().time()
        resp = await post(c, "/mutate/deployments", review(deployment()))
        elapsed = asyncio.get_running_loop().time() - started
    assert resp["allowed"] is True and "timed out" in resp["warnings"][0]
    assert elapsed < 1.0


async def test_missing_volume_admits_unchanged_with_the_reason(
    client: TestClient[Any, Any],
) -> None:
    d = deployment()
    d["spec"]["template"]["spec"]["volumes"] = []
    resp = await post(client, "/mutate/deployments", review(d))
    assert "patch" not in resp
    assert '"data"' in resp["warnings"][0]


async def test_pod_mode_injects_pods_of_a_targeted_deployment() -> None:
    lookup = StaticLookup(
        [BackupConfiguration.model_validate(backup_config())],
        owners={("demo", "ReplicaSet", "web-5d4f"): ("Deployment", "web")},
        uids={("demo", "ReplicaSet", "web-5d4f"): "u"},
    )
    settings = SETTINGS.model_copy(update={"injection_mode": "pod"})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-5d4f-",
            "labels": {"app": "web", "pod-template-hash": "5d4f"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-5d4f",
                    "uid": "u",
                    "controller": True,
                }
            ],
        },
        "spec": deployment()["spec"]["template"]["spec"],
    }
    async with TestClient(TestServer(make_app(settings, lookup))) as c:
        resp = await post(c, "/mutate/pods", review(pod, group="", resource="pods"))
        stored = apply_patch(pod, resp)
        assert [x["name"] for x in stored["spec"]["containers"]] == ["app", "stash"]
        # the workload's template is not touched in pod mode
        resp = await post(c, "/mutate/deployments", review(deployment()))
        assert "patch" not in resp


async def test_restore_session_rules_move_into_the_target(client: TestClient[Any, Any]) -> None:
    rs = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "r", "namespace": "demo"},
        "spec": {
            "repository": {"name": "repo"},
            "rules": [{"paths": ["/data"]}],
            "target": {"ref": {"kind": "Deployment", "name": "web"}},
        },
    }
    resp = await post(
        client,
        "/mutate/restoresessions",
        review(rs, group="stash.appscode.com", version="v1beta1", resource="restoresessions"),
    )
    stored = apply_patch(rs, resp)
    assert "rules" not in stored["spec"]
    assert stored["spec"]["target"]["rules"] == [{"paths": ["/data"]}]


async def test_hand_made_backup_session_gets_selector_labels(client: TestClient[Any, Any]) -> None:
    bs = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": "manual", "namespace": "demo", "labels": {"mine": "yes"}},
        "spec": {
            "invoker": {
                "apiGroup": "stash.appscode.com",
                "kind": "BackupConfiguration",
                "name": "web-backup",
            }
        },
    }
    resp = await post(
        client,
        "/mutate/backupsessions",
        review(bs, group="stash.appscode.com", version="v1beta1", resource="backupsessions"),
    )
    labels = apply_patch(bs, resp)["metadata"]["labels"]
    assert labels == {
        "mine": "yes",
        "stash.appscode.com/invoker-type": "BackupConfiguration",
        "stash.appscode.com/invoker-name": "web-backup",
        "stash.appscode.com/target-kind": "Deployment",
        "stash.appscode.com/target-name": "web",
        "stash.appscode.com/target-namespace": "demo",
    }


# ------------------------------------------------------------------ validation


def stash_review(obj: dict[str, Any], plural: str, **kw: Any) -> dict[str, Any]:
    version = "v1alpha1" if plural == "repositories" else "v1beta1"
    return review(obj, group="stash.appscode.com", version=version, resource=plural, **kw)


async def test_bad_schedule_is_denied_with_the_reason(client: TestClient[Any, Any]) -> None:
    resp = await post(
        client,
        "/validate/backupconfigurations",
        stash_review(backup_config("61 * * * *"), "backupconfigurations"),
    )
    assert resp["allowed"] is False
    assert resp["status"]["code"] == 422
    assert resp["status"]["message"].startswith("spec.schedule: invalid cron schedule")


async def test_valid_object_is_allowed_with_warnings(client: TestClient[Any, Any]) -> None:
    bc = backup_config(retentionPolicy={"name": "all", "prune": False})
    resp = await post(
        client, "/validate/backupconfigurations", stash_review(bc, "backupconfigurations")
    )
    assert resp["allowed"] is True
    assert "every snapshot is kept" in resp["warnings"][0]


async def test_metadata_only_update_is_not_judged_again(client: TestClient[Any, Any]) -> None:
    old = backup_config("bad schedule")
    new = json.loads(json.dumps(old))
    new["metadata"]["finalizers"] = []
    resp = await post(
        client,
        "/validate/backupconfigurations",
        stash_review(new, "backupconfigurations", operation="UPDATE", old=old),
    )
    assert resp["allowed"] is True


async def test_cross_namespace_repository_usage_policy_is_enforced() -> None:
    repo = Repository.model_validate(
        {
            "metadata": {"name": "shared", "namespace": "backups"},
            "spec": {"backend": {"storageSecretName": "s", "gcs": {"bucket": "b"}}},
        }
    )
    bc = backup_config(repository={"name": "shared", "namespace": "backups"})
    async with TestClient(TestServer(make_app(SETTINGS, StaticLookup([repo])))) as c:
        resp = await post(
            c, "/validate/backupconfigurations", stash_review(bc, "backupconfigurations")
        )
    assert resp["allowed"] is False
    assert 'does not allow use from namespace "demo"' in resp["status"]["message"]


async def test_validation_that_cannot_run_denies() -> None:
    class Broken(StaticLookup):
        async def repository(self, namespace: str, name: str) -> Repository | None:
            raise ConnectionError("down")

    bc = backup_config(repository={"name": "shared", "namespace": "backups"})
    async with TestClient(TestServer(make_app(SETTINGS, Broken()))) as c:
        resp = await post(
            c, "/validate/backupconfigurations", stash_review(bc, "backupconfigurations")
        )
    # the usage policy is never skipped: a lookup that fails refuses, saying to retry
    assert resp["allowed"] is False
    assert "could not validate" in resp["status"]["message"] and "down" in resp["status"]["message"]


async def test_health_endpoints(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_a_hand_made_review_gets_no_invokers_settings() -> None:
    """Anyone who can reach the webhook may post an AdmissionReview about another
    namespace's workload; the answer must not carry the invoker's settings (env values),
    which only a request about the object that exists, by the apiserver, may get."""
    secret = "s3cr3t-token-value"
    env = [{"name": "API_TOKEN", "value": secret}]
    bc = BackupConfiguration.model_validate(
        backup_config(runtimeSettings={"container": {"env": env}})
    )
    lookup = StaticLookup([bc], uids={("demo", "Deployment", "web"): "real-uid"})
    async with TestClient(TestServer(make_app(SETTINGS, lookup))) as c:
        # a CREATE of a workload that exists cannot be the apiserver's
        created = await post(c, "/mutate/deployments", review(deployment()))
        # an UPDATE whose old object is not the stored one (uid unknown to the caller)
        forged = deployment()
        forged["metadata"]["uid"] = "guessed"
        updated = await post(
            c, "/mutate/deployments", review(deployment(), operation="UPDATE", old=forged)
        )
        # the real UPDATE still gets its sidecar, settings included
        real = deployment()
        real["metadata"]["uid"] = "real-uid"
        genuine = await post(c, "/mutate/deployments", review(real, operation="UPDATE", old=real))
    for resp in (created, updated):
        assert resp["allowed"] is True and "patch" not in resp
        assert secret not in json.dumps(resp)
        assert "web-backup" not in json.dumps(resp)
    assert secret in base64.b64decode(genuine["patch"]).decode()
    # even the real answer never carries the invoker's spec in an annotation
    patched = apply_patch(real, genuine)
    assert secret not in json.dumps(patched["metadata"])
