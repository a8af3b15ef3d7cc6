"""Who may make the operator act (issue 11, items 1, 3 and 5), decided by the real
apiserver: users alice and bob (static tokens of the test control plane) write objects
through the operator's own admission webhook, and RBAC — not the object — says what the
operator may do for them.

alice and bob may both write Stash objects in the namespace; only alice may patch
Deployments, create pods and read the storage Secret.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from stash.contract.authority import ANN_AUTHOR, Author
from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS, REPOSITORIES
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, KubeError, NotFound, Resource
from stash.kube.resources import DEPLOYMENTS, JOBS, NAMESPACES, PVCS, ROLEBINDINGS, SECRETS
from stash.operator import Operator
from stash_dev import ControlPlane
from tests.integration.operator.conftest import (
    OperatorFactory,
    backup_configuration,
    deployment,
    repository,
    secret,
)
from tests.support.cluster import eventually, token_client
from tests.support.webhook import wait_until_active

# serial: a webhook for every namespace
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
EVENTS = Resource("", "v1", "events", "Event")
STASH_WRITER = [
    {
        "apiGroups": ["stash.appscode.com"],
        "resources": ["backupconfigurations", "restoresessions", "repositories", "backupsessions"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    }
]
ALICE_ALSO = [
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]


async def _grant(kube: Kube, ns: str, name: str, rules: list[JSON], users: list[str]) -> None:
    await kube.create(ROLES, {"metadata": {"name": name}, "rules": rules}, ns)
    await kube.create(
        ROLEBINDINGS,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u} for u in users
            ],
        },
        ns,
    )


@pytest.fixture
async def users(
    rawkube: Kube, control_plane: ControlPlane, namespace: str
) -> AsyncIterator[dict[str, Kube]]:
    """Kube clients of alice and bob, with the roles the module docstring describes."""
    await _grant(rawkube, namespace, "stash-writers", STASH_WRITER, ["alice", "bob"])
    await _grant(rawkube, namespace, "alice-also", ALICE_ALSO, ["alice"])
    clients = {
        user: Kube(
            token_client(
                control_plane.server, control_plane.ca_file, control_plane.user_token(user)
            )
        )
        for user in ("alice", "bob")
    }

    async def rbac_in_effect() -> bool:
        try:
            await clients["bob"].list(BACKUPCONFIGURATIONS, namespace)
        except KubeError:
            return False
        return True

    await eventually(rbac_in_effect, timeout=15, what="the users' RoleBindings")
    yield clients
    for c in clients.values():
        await c.close()


async def _operator_with_webhook(run_operator: OperatorFactory, rawkube: Kube, ns: str) -> Operator:
    op = await run_operator(
        namespace="stash-system",  # the webhook never answers for the operator's namespace
        leader_elect=False,
        serve_webhook=True,
        webhook_host="127.0.0.1",
        webhook_port=0,
        webhook_config_name=f"stash-op-{ns}",
    )

    async def serving() -> bool:
        return op.webhook is not None

    await eventually(serving, timeout=30, what="the operator's webhook")
    await wait_until_active(rawkube, ns)
    return op


async def _refused(kube: Kube, res: Resource, body: JSON, ns: str) -> str:
    with pytest.raises(KubeError) as err:
        await kube.create(res, body, ns)
    assert err.value.status == 422, err.value
    return err.value.message


async def test_only_a_user_who_may_patch_a_workload_may_target_it(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, users: dict[str, Kube]
) -> None:
    await _operator_with_webhook(run_operator, rawkube, namespace)
    await rawkube.create(SECRETS, secret(), namespace)
    await rawkube.create(REPOSITORIES, repository(), namespace)
    await rawkube.create(DEPLOYMENTS, deployment(), namespace)  # another team's

    message = await _refused(
        users["bob"], BACKUPCONFIGURATIONS, backup_configuration("bobs"), namespace
    )
    assert 'user "bob" may not patch deployments.apps "web"' in message
    assert "spec.target.ref" in message

    # bob cannot borrow alice's name for the record either: his label skips the mutating
    # webhook (which would overwrite the record), but not the validating one
    forged = backup_configuration("forged")
    forged["metadata"]["annotations"] = {ANN_AUTHOR: Author("alice", "alice-uid").annotation()}
    forged["metadata"]["labels"] = {"stash.appscode.com/webhook": "disabled"}
    message = await _refused(users["bob"], BACKUPCONFIGURATIONS, forged, namespace)
    assert f"metadata.annotations[{ANN_AUTHOR}]" in message
    assert 'user "bob" may not patch' in message

    stored = await users["alice"].create(BACKUPCONFIGURATIONS, backup_configuration(), namespace)
    author = Author.parse(stored["metadata"].get("annotations"))
    assert author is not None and author.username == "alice"
    assert "system:authenticated" in author.groups

    async def injected() -> JSON | None:
        d = await rawkube.get(DEPLOYMENTS, "web", namespace)
        names = [c["name"] for c in d["spec"]["template"]["spec"]["containers"]]
        return d if names == ["app", "stash"] else None

    d = await eventually(injected, timeout=30, what="alice's sidecar in web")
    # the workload records which invoker, not its spec
    record = d["metadata"]["annotations"]["stash.appscode.com/last-applied-backup-invoker"]
    assert '"spec"' not in record and "bc" in record


def _job_backup(name: str, service_account: str) -> JSON:
    bc = backup_configuration(name, schedule="0 0 1 1 *")
    bc["spec"]["target"] = {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
    }
    bc["spec"]["runtimeSettings"] = {"pod": {"serviceAccountName": service_account}}
    return bc


def _pvc() -> JSON:
    return {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


async def _trigger(kube: Kube, ns: str, name: str) -> str:
    bc = await kube.get(BACKUPCONFIGURATIONS, name, ns)

    async def ready() -> JSON | None:
        obj = await kube.get(BACKUPCONFIGURATIONS, name, ns)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    bc = await eventually(ready, timeout=30, what=f"{name} Ready")
    return await create_backup_session(kube, bc, dt.datetime.now(dt.UTC))


async def _executor_condition(kube: Kube, ns: str, session: str) -> JSON:
    async def ensured() -> JSON | None:
        obj = await kube.get(BACKUPSESSIONS, session, ns)
        for target in (obj.get("status") or {}).get("targets") or []:
            for c in target.get("conditions") or []:
                if c["type"] == "BackupExecutorEnsured":
                    return dict(c)
        return None

    return await eventually(ensured, timeout=30, what="BackupExecutorEnsured")


async def _binding_exists(kube: Kube, ns: str, name: str) -> bool:
    try:
        await kube.get(ROLEBINDINGS, name, ns)
    except NotFound:
        return False
    return True


async def test_a_service_account_is_bound_only_for_an_author_who_may_use_it(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, users: dict[str, Kube]
) -> None:
    await _operator_with_webhook(run_operator, rawkube, namespace)
    for res, body in ((SECRETS, secret()), (REPOSITORIES, repository()), (PVCS, _pvc())):
        await rawkube.create(res, body, namespace)

    message = await _refused(
        users["bob"], BACKUPCONFIGURATIONS, _job_backup("bobs", "app-admin"), namespace
    )
    assert "spec.runtimeSettings.pod.serviceAccountName" in message
    assert 'user "bob" may not create pods in namespace' in message

    await users["alice"].create(BACKUPCONFIGURATIONS, _job_backup("alices", "app-admin"), namespace)
    session = await _trigger(rawkube, namespace, "alices")
    ensured = await _executor_condition(rawkube, namespace, session)
    assert ensured["status"] == "True", ensured
    assert await _binding_exists(rawkube, namespace, "stash-backup-job-app-admin")
    jobs = (await rawkube.list(JOBS, namespace))["items"]
    assert [j["spec"]["template"]["spec"]["serviceAccountName"] for j in jobs] == ["app-admin"]


async def test_without_an_author_record_nothing_is_bound(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    # the webhook was down (or the object predates it): fail closed
    await run_operator()
    for res, body in ((SECRETS, secret()), (REPOSITORIES, repository()), (PVCS, _pvc())):
        await rawkube.create(res, body, namespace)
    await rawkube.create(BACKUPCONFIGURATIONS, _job_backup("unrecorded", "app-admin"), namespace)
    session = await _trigger(rawkube, namespace, "unrecorded")
    ensured = await _executor_condition(rawkube, namespace, session)
    assert ensured["status"] == "False"
    assert 'names ServiceAccount "app-admin" but has no record of who did' in ensured["message"]
    assert not await _binding_exists(rawkube, namespace, "stash-backup-job-app-admin")
    assert (await rawkube.list(JOBS, namespace))["items"] == []
    events = (await rawkube.list(EVENTS, namespace))["items"]
    assert any(
        e["reason"] == "ServiceAccountNotAuthorized" and e["involvedObject"]["name"] == "unrecorded"
        for e in events
    )


async def test_wipe_out_needs_an_author_who_may_read_the_storage_secret(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, users: dict[str, Kube]
) -> None:
    await _operator_with_webhook(run_operator, rawkube, namespace)
    repo: dict[str, Any] = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "wiped"},
        "spec": {
            "wipeOut": True,
            "backend": {
                "storageSecretName": "s3-creds",
                "s3": {"endpoint": "minio:9000", "bucket": "shared", "prefix": "team/repo"},
            },
        },
    }
    message = await _refused(users["bob"], REPOSITORIES, repo, namespace)
    assert 'spec.wipeOut: user "bob" may not get secrets "s3-creds"' in message
    await users["alice"].create(REPOSITORIES, repo, namespace)
    # and never without a prefix, whoever asks
    repo["metadata"]["name"] = "everything"
    repo["spec"]["backend"]["s3"]["prefix"] = "/"
    message = await _refused(rawkube, REPOSITORIES, repo, namespace)
    assert "spec.backend.s3.prefix" in message


async def test_a_security_context_beyond_the_namespaces_pod_security_level_is_refused(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await _operator_with_webhook(run_operator, rawkube, namespace)
    labels = {"pod-security.kubernetes.io/enforce": "baseline"}
    await rawkube.patch(NAMESPACES, namespace, {"metadata": {"labels": labels}})
    bc = _job_backup("privileged", "stash-agent")
    bc["spec"]["runtimeSettings"] = {"container": {"securityContext": {"privileged": True}}}

    async def refused() -> str | None:
        try:
            await rawkube.create(BACKUPCONFIGURATIONS, bc, namespace)
        except KubeError as exc:
            return exc.message
        await rawkube.delete(BACKUPCONFIGURATIONS, "privileged", namespace)
        return None  # the webhook had not seen the new label yet

    message = await eventually(refused, timeout=15, what="the refusal")
    assert "spec.runtimeSettings.container.securityContext.privileged" in message
    assert "Pod Security level baseline" in message


async def test_a_hand_made_review_gets_no_invoker_settings_from_the_webhook(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, users: dict[str, Kube]
) -> None:
    """Anyone who can reach the webhook port may post an AdmissionReview (that is why the
    chart offers a NetworkPolicy); it gets no patch for a workload it cannot read."""
    op = await _operator_with_webhook(run_operator, rawkube, namespace)
    assert op.webhook is not None and op.webhook.bundle is not None
    for res, body in ((SECRETS, secret()), (REPOSITORIES, repository())):
        await rawkube.create(res, body, namespace)
    await rawkube.create(DEPLOYMENTS, deployment(), namespace)
    bc = backup_configuration()
    token = "s3cr3t-api-token"
    bc["spec"]["runtimeSettings"] = {"container": {"env": [{"name": "TOKEN", "value": token}]}}
    await users["alice"].create(BACKUPCONFIGURATIONS, bc, namespace)

    async def injected() -> bool:
        d = await rawkube.get(DEPLOYMENTS, "web", namespace)
        return len(d["spec"]["template"]["spec"]["containers"]) == 2

    await eventually(injected, timeout=30, what="the sidecar in web")
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "forged",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "operation": "CREATE",
            "namespace": namespace,
            "name": "web",
            "object": {**deployment(), "apiVersion": "apps/v1", "kind": "Deployment"},
            "userInfo": {"username": "system:admin", "groups": ["system:masters"]},
        },
    }
    tls = ssl.create_default_context(cadata=op.webhook.bundle.ca_bundle.decode())
    url = f"https://127.0.0.1:{op.webhook.port}/mutate/deployments"
    async with aiohttp.ClientSession() as http, http.post(url, json=review, ssl=tls) as resp:
        answer = await resp.json()
    assert answer["response"]["allowed"] is True
    assert "patch" not in answer["response"]
    assert token not in json.dumps(answer)
