"""What a job-model Job learns about its Repository and target (§5.5 variables), and the
one answer to "Job or sidecar?" for an invoker."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stash.api import BackupConfiguration, Repository, RestoreSession
from stash.api.common import BackupTarget, RestoreTarget
from stash.contract.resources import FUNCTIONS, TASKS
from stash.controllers.provisioning import (
    _task_and_functions,
    is_job_model,
    repository_inputs,
    target_inputs,
)
from stash.kube.client import JSON, NotFound


def _bc(**spec: Any) -> BackupConfiguration:
    return BackupConfiguration.model_validate(
        {
            "metadata": {"name": "b", "namespace": "demo"},
            "spec": {"retentionPolicy": {"name": "keep", "keepLast": 1}, **spec},
        }
    )


def test_s3_repository_variables() -> None:
    repo = Repository.model_validate(
        {
            "metadata": {"name": "r", "namespace": "store"},
            "spec": {
                "backend": {
                    "storageSecretName": "s3-creds",
                    "s3": {
                        "endpoint": "minio:9000",
                        "bucket": "backups",
                        "prefix": "team-a",
                        "region": "eu",
                        "insecureTLS": True,
                    },
                }
            },
        }
    )
    assert repository_inputs(repo) == {
        "REPOSITORY_NAME": "r",
        "REPOSITORY_NAMESPACE": "store",
        "REPOSITORY_PROVIDER": "s3",
        "REPOSITORY_BUCKET": "backups",
        "REPOSITORY_PREFIX": "team-a",
        "REPOSITORY_ENDPOINT": "minio:9000",
        "REPOSITORY_REGION": "eu",
        "REPOSITORY_INSECURE_TLS": "true",
        "REPOSITORY_SECRET_NAME": "s3-creds",
        "REPOSITORY_SECRET_NAMESPACE": "store",
        "MAX_CONNECTIONS": "0",
    }
    assert repository_inputs(None) == {}


def test_azure_container_and_rest_url_fill_bucket_and_endpoint() -> None:
    def inputs(backend: dict[str, Any]) -> dict[str, str]:
        repo = {"metadata": {"name": "r", "namespace": "d"}, "spec": {"backend": backend}}
        return repository_inputs(Repository.model_validate(repo))

    azure = inputs({"azure": {"container": "c", "maxConnections": 4}})
    assert (azure["REPOSITORY_BUCKET"], azure["MAX_CONNECTIONS"]) == ("c", "4")
    rest = inputs({"rest": {"url": "http://rest:8000/"}})
    assert (rest["REPOSITORY_PROVIDER"], rest["REPOSITORY_ENDPOINT"]) == (
        "rest",
        "http://rest:8000/",
    )


def test_target_variables_default_to_the_scratch_mount() -> None:
    backup = BackupTarget.model_validate(
        {
            "ref": {"kind": "PersistentVolumeClaim", "name": "data"},
            "paths": ["/a", "/b"],
            "volumeMounts": [{"name": "v", "mountPath": "/src"}],
            "exclude": ["*.tmp"],
            "args": ["--x", "1"],
        }
    )
    assert target_inputs(backup, "demo") == {
        "TARGET_KIND": "PersistentVolumeClaim",
        "TARGET_NAME": "data",
        "TARGET_NAMESPACE": "demo",
        "TARGET_PATHS": "/a,/b",
        "TARGET_MOUNT_PATH": "/src",
        "EXCLUDE_PATTERNS": "*.tmp",
        "DRIVER_ARGS": "--x 1",
    }
    restore = target_inputs(RestoreTarget(), "demo")
    assert (restore["TARGET_PATHS"], restore["TARGET_MOUNT_PATH"]) == ("/stash-data", "/stash-data")


def test_job_or_sidecar_follows_the_execution_model() -> None:
    deployment = {"target": {"ref": {"kind": "Deployment", "name": "app"}}}
    assert not is_job_model(_bc(**deployment))
    assert is_job_model(_bc(**deployment, task={"name": "pvc-backup"}))
    assert is_job_model(_bc(target={"ref": {"kind": "PersistentVolumeClaim", "name": "d"}}))
    dc = {"target": {"ref": {"kind": "DeploymentConfig", "name": "app"}}}
    assert not is_job_model(_bc(**dc))
    rs = RestoreSession.model_validate(
        {"metadata": {"name": "r"}, "spec": {"target": {"volumeClaimTemplates": [{}]}}}
    )
    assert is_job_model(rs)


class _Catalog:
    """An apiserver holding Task `t` (steps a, b, a) and the Functions named."""

    def __init__(self, *functions: str) -> None:
        self.functions = set(functions)

    async def get(self, resource: Any, name: str, namespace: str | None = None) -> JSON:
        if resource is TASKS and name == "t":
            steps = [{"name": "a"}, {"name": "b"}, {"name": "a"}]
            return {"metadata": {"name": "t"}, "spec": {"steps": steps}}
        if resource is FUNCTIONS and name in self.functions:
            return {"metadata": {"name": name}}
        raise NotFound(404, "NotFound", f"{name} not found")


async def test_a_tasks_functions_are_all_found_or_the_missing_one_is_named() -> None:
    ctx: Any = SimpleNamespace(kube=_Catalog("a", "b"))
    task, functions = await _task_and_functions(ctx, "t")
    assert task["metadata"]["name"] == "t" and sorted(functions) == ["a", "b"]
    ctx.kube = _Catalog("a")
    with pytest.raises(LookupError, match=r"Function b \(a step of Task t\) does not exist"):
        await _task_and_functions(ctx, "t")
