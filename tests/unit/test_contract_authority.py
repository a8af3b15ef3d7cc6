"""Who may make the operator act: the author record and the permissions an object needs
(stash.contract.authority), as pure rules."""

from __future__ import annotations

import copy
from typing import Any

from stash.api import BackupBatch, BackupConfiguration, Repository, RestoreSession
from stash.contract.authority import (
    ANN_AUTHOR,
    Author,
    author_problem,
    invoker_access,
    repository_access,
    with_author,
)

ALICE = Author.from_user_info({"username": "alice", "uid": "1", "groups": ["devs"]})
BOB = Author.from_user_info({"username": "bob"})


def bc(**spec: Any) -> dict[str, Any]:
    body = {
        "schedule": "@hourly",
        "repository": {"name": "repo"},
        "retentionPolicy": {"name": "keep", "keepLast": 1},
        "target": {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        **spec,
    }
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "b", "namespace": "demo"},
        "spec": body,
    }


def recorded(obj: dict[str, Any]) -> Author | None:
    return Author.parse(obj["metadata"].get("annotations"))


def test_the_record_follows_whoever_changes_what_the_operator_does() -> None:
    created = with_author(bc(), None, ALICE)
    assert recorded(created) == ALICE
    paused = copy.deepcopy(created)
    paused["spec"]["paused"] = True
    del paused["metadata"]["annotations"]
    assert recorded(with_author(paused, created, BOB)) == ALICE  # pausing is no authority
    moved = copy.deepcopy(created)
    moved["spec"]["target"]["ref"]["name"] = "db"
    assert recorded(with_author(moved, created, BOB)) == BOB
    # an object admitted before records existed gets one at its next spec change
    legacy = bc()
    touched = copy.deepcopy(legacy)
    touched["spec"]["schedule"] = "@daily"
    assert recorded(with_author(touched, legacy, BOB)) == BOB
    assert recorded(with_author(copy.deepcopy(legacy), legacy, BOB)) is None


def test_only_the_webhook_writes_the_record() -> None:
    claimed = bc()
    claimed["metadata"]["annotations"] = {ANN_AUTHOR: ALICE.annotation()}  # type: ignore[union-attr]
    assert author_problem(claimed, None, ALICE) is None
    problem = author_problem(claimed, None, BOB)
    assert problem is not None and '"bob"' in problem
    # a metadata-only update may keep the stored record, not change it
    assert author_problem(claimed, claimed, BOB) is None
    forged = copy.deepcopy(claimed)
    forged["metadata"]["annotations"][ANN_AUTHOR] = Author("system:admin").annotation()
    assert author_problem(forged, claimed, BOB) is not None
    assert author_problem(bc(), claimed, BOB) is None  # dropping it binds nothing


def test_what_the_author_must_be_allowed() -> None:
    sidecar = BackupConfiguration.model_validate(bc())
    ((path, access),) = invoker_access(sidecar)
    assert path == "spec.target.ref"
    assert (access.verb, access.group, access.resource, access.name) == (
        "patch",
        "apps",
        "deployments",
        "web",
    )
    job = BackupConfiguration.model_validate(
        bc(
            target={"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "d"}},
            runtimeSettings={"pod": {"serviceAccountName": "app-admin"}},
        )
    )
    ((path, access),) = invoker_access(job)
    assert path == "spec.runtimeSettings.pod.serviceAccountName"
    assert (access.verb, access.resource, access.name) == ("create", "pods", "")
    assert '"app-admin"' in access.why
    restore = RestoreSession.model_validate(
        {
            "metadata": {"name": "r", "namespace": "demo"},
            "spec": {
                "repository": {"name": "repo"},
                "task": {"name": "pvc-restore"},
                "target": {"volumeClaimTemplates": [{"metadata": {"name": "x"}, "spec": {}}]},
            },
        }
    )
    assert [a.resource for _, a in invoker_access(restore)] == ["pods", "persistentvolumeclaims"]
    batch = BackupBatch.model_validate(
        {
            "metadata": {"name": "batch", "namespace": "demo"},
            "spec": {
                "repository": {"name": "repo"},
                "retentionPolicy": {"name": "keep", "keepLast": 1},
                "members": [
                    {
                        "target": {
                            "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}
                        }
                    },
                    {
                        "target": {
                            "ref": {
                                "apiVersion": "v1",
                                "kind": "PersistentVolumeClaim",
                                "name": "d",
                            }
                        }
                    },
                ],
            },
        }
    )
    assert [(p, a.verb, a.resource) for p, a in invoker_access(batch)] == [
        ("spec.members[0].target.ref", "patch", "statefulsets"),
        ("spec.members[1].target", "create", "pods"),
    ]


def test_wipe_out_needs_the_storage_secret() -> None:
    def repo(**spec: Any) -> Repository:
        backend = {"storageSecretName": "creds", "gcs": {"bucket": "b", "prefix": "p"}}
        return Repository.model_validate(
            {"metadata": {"name": "r", "namespace": "demo"}, "spec": {"backend": backend, **spec}}
        )

    ((path, access),) = repository_access(repo(wipeOut=True))
    assert (path, access.verb, access.resource, access.name) == (
        "spec.wipeOut",
        "get",
        "secrets",
        "creds",
    )
    assert repository_access(repo()) == []
