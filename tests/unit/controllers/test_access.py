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
            "verbs": ["get", "update"],
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
