"""Who may make the operator act (issue 11, items 1, 3, 5, 6): what the validating and
mutating routes answer for the requesting user, through aiohttp's test client."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stash.api import Repository
from stash.contract.authority import ANN_AUTHOR, Author
from stash.settings import OperatorSettings
from stash.webhook.app import make_app
from stash.webhook.lookup import StaticLookup
from tests.unit.test_webhook_app import apply_patch, backup_config, post

SETTINGS = OperatorSettings(namespace="stash")
ALICE = {"username": "alice", "uid": "1", "groups": ["devs", "system:authenticated"]}
BOB = {"username": "bob", "groups": ["system:authenticated"]}


def review(
    obj: dict[str, Any],
    resource: str,
    user: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    kind = obj["kind"]
    version = "v1alpha1" if kind == "Repository" else "v1beta1"
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "stash.appscode.com", "version": version, "kind": kind},
        "resource": {"group": "stash.appscode.com", "version": version, "resource": resource},
        "operation": operation,
        "namespace": "demo",
        "name": obj["metadata"]["name"],
        "object": obj,
        "oldObject": old,
    }
    if user is not None:
        request["userInfo"] = user
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def job_backup(**spec: Any) -> dict[str, Any]:
    """A job-model BackupConfiguration (a PVC target)."""
    bc = backup_config(**spec)
    bc["spec"]["target"] = {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
    }
    return bc


@pytest.fixture
def lookup() -> StaticLookup:
    return StaticLookup(
        denied={
            ("bob", "patch", "deployments", "web"),
            ("bob", "create", "pods", ""),
            ("bob", "get", "secrets", "s3-creds"),
        },
        namespaces={"demo": {}},
    )


@pytest.fixture
async def client(lookup: StaticLookup) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(SETTINGS, lookup))) as c:
        yield c


async def validate(client: TestClient[Any, Any], body: dict[str, Any]) -> dict[str, Any]:
    plural = body["request"]["resource"]["resource"]
    return await post(client, f"/validate/{plural}", body)


async def test_the_author_must_be_allowed_to_patch_the_workload_they_target(
    client: TestClient[Any, Any],
) -> None:
    bc = backup_config()
    assert (await validate(client, review(bc, "backupconfigurations", ALICE)))["allowed"]
    refused = await validate(client, review(bc, "backupconfigurations", BOB))
    assert refused["allowed"] is False
    message = refused["status"]["message"]
    assert 'spec.target.ref: user "bob" may not patch deployments.apps "web"' in message
    # a request without a user cannot be checked: refused too
    nobody = await validate(client, review(bc, "backupconfigurations", None))
    assert nobody["allowed"] is False and "names no user" in nobody["status"]["message"]


async def test_bob_may_still_pause_alices_backup(client: TestClient[Any, Any]) -> None:
    # the authority view (target, runtime settings, ...) is unchanged: no new check
    old = backup_config()
    old["metadata"]["annotations"] = {ANN_AUTHOR: Author.from_user_info(ALICE).annotation()}  # type: ignore[union-attr]
    paused = json.loads(json.dumps(old))
    paused["spec"]["paused"] = True
    resp = await validate(
        client, review(paused, "backupconfigurations", BOB, operation="UPDATE", old=old)
    )
    assert resp["allowed"] is True


async def test_a_job_needs_an_author_who_may_create_pods(client: TestClient[Any, Any]) -> None:
    custom_sa = job_backup(runtimeSettings={"pod": {"serviceAccountName": "app-admin"}})
    refused = await validate(client, review(custom_sa, "backupconfigurations", BOB))
    assert refused["allowed"] is False
    message = refused["status"]["message"]
    assert "spec.runtimeSettings.pod.serviceAccountName" in message
    assert 'may not create pods in namespace "demo"' in message
    assert '"app-admin"' in message
    assert (await validate(client, review(custom_sa, "backupconfigurations", ALICE)))["allowed"]


async def test_operator_owned_task_params_are_refused(client: TestClient[Any, Any]) -> None:
    bc = job_backup(
        task={"name": "pvc-backup", "params": [{"name": "STASH_DOCKER_IMAGE", "value": "evil"}]}
    )
    refused = await validate(client, review(bc, "backupconfigurations", ALICE))
    assert refused["allowed"] is False
    assert (
        "spec.task.params[0].name: STASH_DOCKER_IMAGE is set by the operator"
        in refused["status"]["message"]
    )


async def test_a_security_context_beyond_the_namespaces_pod_security_level_is_refused(
    lookup: StaticLookup, client: TestClient[Any, Any]
) -> None:
    privileged = job_backup(
        runtimeSettings={
            "container": {
                "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
            },
            "pod": {"securityContext": {"runAsUser": 0}},
        }
    )
    # no enforce label: the cluster's default level is not known here; PSA judges the pod
    assert (await validate(client, review(privileged, "backupconfigurations", ALICE)))["allowed"]
    lookup.namespaces["demo"] = {"pod-security.kubernetes.io/enforce": "baseline"}
    refused = await validate(client, review(privileged, "backupconfigurations", ALICE))
    message = refused["status"]["message"]
    assert refused["allowed"] is False
    assert "spec.runtimeSettings.container.securityContext.privileged" in message
    assert "SYS_ADMIN may not be added" in message
    assert "Pod Security level baseline" in message
    assert "runAsUser" not in message  # root is baseline
    lookup.namespaces["demo"] = {"pod-security.kubernetes.io/enforce": "restricted"}
    refused = await validate(client, review(privileged, "backupconfigurations", ALICE))
    assert (
        "spec.runtimeSettings.pod.securityContext.runAsUser: must not be 0"
        in refused["status"]["message"]
    )


async def test_the_author_record_is_the_webhooks_to_write(client: TestClient[Any, Any]) -> None:
    bc = backup_config()
    created = await post(
        client, "/mutate/backupconfigurations", review(bc, "backupconfigurations", ALICE)
    )
    stored = apply_patch(bc, created)
    record = stored["metadata"]["annotations"][ANN_AUTHOR]
    assert Author.parse(stored["metadata"]["annotations"]) == Author.from_user_info(ALICE)
    # the validating webhook accepts the record the mutating one wrote
    assert (await validate(client, review(stored, "backupconfigurations", ALICE)))["allowed"]

    # bob claims alice wrote his object (the mutating webhook was skipped): refused
    forged = backup_config()
    forged["metadata"]["annotations"] = {ANN_AUTHOR: record}
    refused = await validate(client, review(forged, "backupconfigurations", BOB))
    assert refused["allowed"] is False
    assert f"metadata.annotations[{ANN_AUTHOR}]" in refused["status"]["message"]

    # ... nor by a metadata-only update of alice's object
    edited = json.loads(json.dumps(stored))
    edited["metadata"]["annotations"][ANN_AUTHOR] = Author("system:admin").annotation()
    refused = await validate(
        client, review(edited, "backupconfigurations", BOB, operation="UPDATE", old=stored)
    )
    assert refused["allowed"] is False

    # the mutating webhook keeps alice's record when bob only pauses it ...
    paused = json.loads(json.dumps(stored))
    paused["spec"]["paused"] = True
    del paused["metadata"]["annotations"][ANN_AUTHOR]
    kept = await post(
        client,
        "/mutate/backupconfigurations",
        review(paused, "backupconfigurations", BOB, operation="UPDATE", old=stored),
    )
    assert apply_patch(paused, kept)["metadata"]["annotations"][ANN_AUTHOR] == record
    # ... and records bob when he changes what the operator does
    retargeted = json.loads(json.dumps(stored))
    retargeted["spec"]["target"]["paths"] = ["/data/db"]
    mine = await post(
        client,
        "/mutate/backupconfigurations",
        review(retargeted, "backupconfigurations", BOB, operation="UPDATE", old=stored),
    )
    after = apply_patch(retargeted, mine)["metadata"]["annotations"][ANN_AUTHOR]
    assert Author.parse({ANN_AUTHOR: after}) == Author.from_user_info(BOB)


def s3_repository(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": "demo"},
        "spec": {
            "backend": {
                "storageSecretName": "s3-creds",
                "s3": {"endpoint": "minio:9000", "bucket": "b", "prefix": "team/repo"},
            },
            **spec,
        },
    }


async def test_wipe_out_needs_an_author_who_may_read_the_credentials(
    client: TestClient[Any, Any],
) -> None:
    wipe = s3_repository(wipeOut=True)
    refused = await validate(client, review(wipe, "repositories", BOB))
    assert refused["allowed"] is False
    assert 'spec.wipeOut: user "bob" may not get secrets "s3-creds"' in refused["status"]["message"]
    assert (await validate(client, review(wipe, "repositories", ALICE)))["allowed"]
    # without wipeOut the operator deletes nothing: no check
    assert (await validate(client, review(s3_repository(), "repositories", BOB)))["allowed"]


async def test_a_cross_namespace_repository_that_does_not_exist_yet_is_deferred(
    lookup: StaticLookup, client: TestClient[Any, Any]
) -> None:
    bc = backup_config(repository={"name": "shared", "namespace": "backups"})
    deferred = await validate(client, review(bc, "backupconfigurations", ALICE))
    assert deferred["allowed"] is True
    assert "does not exist yet" in deferred["warnings"][0]
    lookup.objects.append(
        Repository.model_validate(
            {
                "metadata": {"name": "shared", "namespace": "backups"},
                "spec": {"backend": {"storageSecretName": "s", "gcs": {"bucket": "b"}}},
            }
        )
    )
    refused = await validate(client, review(bc, "backupconfigurations", ALICE))
    assert refused["allowed"] is False
    assert 'does not allow use from namespace "demo"' in refused["status"]["message"]
