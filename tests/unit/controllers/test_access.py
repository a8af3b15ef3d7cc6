"""What the operator grants an agent whose Repository is in another namespace: exactly
that Repository and its Secret, owned by the Repository."""

from __future__ import annotations

from stash.api import Repository
from stash.controllers.access import repository_grant


def _repo() -> Repository:
    return Repository.model_validate(
        {
            "metadata": {"name": "shared", "namespace": "backups", "uid": "repo-uid"},
            "spec": {"backend": {"storageSecretName": "s3-creds", "gcs": {"bucket": "b"}}},
        }
    )


def test_a_backup_may_read_the_repository_and_its_secret_and_write_its_status() -> None:
    role, binding = repository_grant("BackupConfiguration", "team-a", "web", _repo(), "app-sa")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "backups"
    assert role["metadata"]["name"] == binding["roleRef"]["name"] == "stash-backup-team-a-web"
    # one binding per ServiceAccount: a batch's Job and workload members run as different ones
    assert binding["metadata"]["name"] == "stash-backup-team-a-web-app-sa"
    assert role["rules"] == [
        {
            "apiGroups": ["stash.appscode.com"],
            "resources": ["repositories"],
            "resourceNames": ["shared"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["stash.appscode.com"],
            "resources": ["repositories/status"],
            "resourceNames": ["shared"],
            "verbs": ["update"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["s3-creds"],
            "verbs": ["get"],
        },
    ]
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "app-sa", "namespace": "team-a"}
    ]
    owner = role["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Repository", "shared", "repo-uid")


def test_a_restore_only_reads() -> None:
    role, _ = repository_grant("RestoreSession", "team-a", "web", _repo(), "default")
    assert role["metadata"]["name"] == "stash-restore-team-a-web"
    assert all(rule["verbs"] == ["get"] for rule in role["rules"])
    long = repository_grant("RestoreSession", "n" * 63, "r" * 253, _repo(), "default")[0]
    assert len(long["metadata"]["name"]) <= 253


def test_two_accounts_of_one_invoker_get_two_bindings_of_its_one_role() -> None:
    job = repository_grant("BackupBatch", "team-a", "wp", _repo(), "stash-agent", "role-uid")
    workload = repository_grant("BackupBatch", "team-a", "wp", _repo(), "default", "role-uid")
    assert job[0] == workload[0]
    assert job[1]["metadata"]["name"] != workload[1]["metadata"]["name"]
    # owned by the Role, so deleting the invoker's Role deletes every binding
    owner = job[1]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Role",
        "stash-backup-team-a-wp",
        "role-uid",
    )
