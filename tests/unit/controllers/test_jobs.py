"""The job model's Job from the built-in pvc-backup Task: variables resolved, steps in
order (all but the last as init-containers), the PVC mounted where the target says."""

from __future__ import annotations

import inspect
import re

import pytest

from stash.api import Repository
from stash.api.common import BackupTarget, RestoreTarget, Rule
from stash.contract.steps import BACKUP_PVC_FLAGS
from stash.contract.taskparams import OPERATOR_PARAMS
from stash.controllers import provisioning
from stash.controllers.catalog import builtin_functions, builtin_tasks
from stash.controllers.jobs import build_job, envsubst, job_name, pod_security_context
from stash.controllers.provisioning import (
    _image_inputs,
    _rule_inputs,
    repository_inputs,
    target_inputs,
)
from stash.inject.container import local_backend
from stash.kube.client import JSON
from stash.settings import OperatorSettings
from tests.support.pod_security import restricted_violations


def test_envsubst_defaults_and_unknowns() -> None:
    v = {"A": "1", "EMPTY": ""}
    assert envsubst("${A}/${B:=two}/${EMPTY:=x}/${C}", v) == "1/two/x/"
    assert envsubst({"k": ["${A}", 3]}, v) == {"k": ["1", 3]}


def test_job_name_is_at_most_63_characters() -> None:
    assert (
        job_name("stash-backup", "pvc-backup-1700000000", 0)
        == "stash-backup-pvc-backup-1700000000-0"
    )
    long = job_name("stash-restore", "r" * 80, 0, 3)
    assert len(long) == 63 and long.startswith("stash-restore-")
    assert long == job_name("stash-restore", "r" * 80, 0, 3)  # stable


def test_long_names_sharing_their_ends_get_different_jobs() -> None:
    # middle truncation gave these two invokers' sessions one Job, so one never ran
    primary = job_name(
        "stash-backup", "postgres-production-primary-in-the-eu-west-cluster-1700000000", 0
    )
    replica = job_name(
        "stash-backup", "postgres-production-replica-in-the-eu-west-cluster-1700000000", 0
    )
    assert primary != replica
    assert len(primary) <= 63 and len(replica) <= 63


def _pvc_backup_job(
    params: dict[str, str] | None = None, backend_volume: tuple[JSON, JSON] | None = None
) -> dict:  # type: ignore[type-arg]
    functions = {f["metadata"]["name"]: f for f in builtin_functions()}
    task = next(t for t in builtin_tasks() if t["metadata"]["name"] == "pvc-backup")
    return build_job(
        name="stash-backup-pvc-backup-1-0",
        namespace="demo",
        task=task,
        functions=functions,
        inputs={
            "TARGET_NAME": "data-pvc",
            "TARGET_PATHS": "/source/data",
            "TARGET_MOUNT_PATH": "/source/data",
            "BACKUP_SESSION": "pvc-backup-1",
            "NAMESPACE": "demo",
            "HOSTNAME": "host-0",
            "STASH_DOCKER_REGISTRY": "reg",
            "STASH_DOCKER_IMAGE": "stash",
            "STASH_IMAGE_TAG": "1.0",
        },
        invoker_params=params or {},
        labels={"a": "b"},
        owner={"kind": "BackupSession", "name": "pvc-backup-1", "uid": "u"},
        service_account="stash-agent",
        run_as_user=65535,
        backend_volume=backend_volume,
    )


def test_pvc_backup_job_matches_the_documented_shape() -> None:
    job = _pvc_backup_job()
    assert job["metadata"]["name"] == "stash-backup-pvc-backup-1-0"
    pod = job["spec"]["template"]["spec"]
    (backup,) = pod["initContainers"]
    (update,) = pod["containers"]
    assert (backup["name"], update["name"]) == ("pvc-backup-0", "update-status-1")
    assert backup["image"] == "reg/stash:1.0" and backup["command"] == ["stash"]
    assert backup["args"][0] == "backup-pvc"
    assert "--backup-paths=/source/data" in backup["args"]
    assert "--hostname=host-0" in backup["args"]
    assert "--output-dir=/stash-tmp/output" in backup["args"]
    assert not any("${" in a for a in backup["args"] + update["args"]), "all variables resolved"
    mounts = {m["name"]: m["mountPath"] for m in backup["volumeMounts"]}
    assert mounts == {"stash-volume": "/source/data", "stash-tmp-dir": "/stash-tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["stash-volume"]["persistentVolumeClaim"]["claimName"] == "data-pvc"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert pod["securityContext"]["runAsUser"] == 65535
    assert {f.name for f in BACKUP_PVC_FLAGS} == {a.split("=")[0][2:] for a in backup["args"][1:]}


def test_a_local_backend_is_a_volume_of_the_job_mounted_in_every_step() -> None:
    # Without it the steps' restic found no repository at backend.local.mountPath.
    repo = Repository.model_validate(
        {
            "metadata": {"name": "r", "namespace": "n"},
            "spec": {
                "backend": {
                    "storageSecretName": "s",
                    "local": {"hostPath": {"path": "/backups"}, "mountPath": "/safe/repo"},
                }
            },
        }
    )
    job = _pvc_backup_job(backend_volume=local_backend(repo, "stash-local"))
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["stash-local"]["hostPath"] == {"type": "", "path": "/backups"}
    for container in [*pod["initContainers"], *pod["containers"]]:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["stash-local"] == "/safe/repo", container["name"]
    plain = _pvc_backup_job()["spec"]["template"]["spec"]
    assert "stash-local" not in {v["name"] for v in plain["volumes"]}


def test_a_restore_job_follows_the_rule_of_its_own_host() -> None:
    rules = [
        Rule(target_hosts=["host-1"], source_host="host-0", paths=["/a"]),
        Rule(paths=["/b"]),
    ]
    assert _rule_inputs(rules, "host-1")["RESTORE_PATHS"] == "/a"
    assert _rule_inputs(rules, "host-1")["SOURCE_HOSTNAME"] == "host-0"
    assert _rule_inputs(rules, "host-2")["RESTORE_PATHS"] == "/b"
    # No rule is for host-2: nothing given, the step follows the rules itself.
    unnamed = _rule_inputs(rules[:1], "host-2")
    assert unnamed["RESTORE_PATHS"] == unnamed["RESTORE_SNAPSHOTS"] == ""


def test_operator_inputs_win_over_invoker_params() -> None:
    # An invoker naming its own image would run it with the agent's ServiceAccount.
    job = _pvc_backup_job(
        {"STASH_DOCKER_REGISTRY": "evil.example", "STASH_DOCKER_IMAGE": "x", "HOSTNAME": "h"}
    )
    pod = job["spec"]["template"]["spec"]
    (backup,) = pod["initContainers"]
    assert {c["image"] for c in [*pod["initContainers"], *pod["containers"]]} == {"reg/stash:1.0"}
    assert "--hostname=host-0" in backup["args"]


def test_invoker_params_the_operator_does_not_set_win_over_the_tasks() -> None:
    job = _pvc_backup_job({"outputDir": "/stash-tmp/elsewhere"})
    (backup,) = job["spec"]["template"]["spec"]["initContainers"]
    assert "--output-dir=/stash-tmp/elsewhere" in backup["args"]


def test_every_variable_the_operator_sets_is_operator_owned() -> None:
    repo = Repository.model_validate(
        {
            "metadata": {"name": "r", "namespace": "n"},
            "spec": {"backend": {"storageSecretName": "s", "s3": {"endpoint": "e", "bucket": "b"}}},
        }
    )
    names = {
        *repository_inputs(repo),
        *target_inputs(BackupTarget(), "n"),
        *target_inputs(RestoreTarget(), "n"),
        *_image_inputs(OperatorSettings()),
        *_rule_inputs([], "host-0"),
    }
    assert names <= OPERATOR_PARAMS
    # the names ensure_*_executor set inline
    source = inspect.getsource(provisioning)
    inline = set(re.findall(r'^\s+"([A-Z][A-Z_]+)":', source, re.M))
    assert inline and inline <= OPERATOR_PARAMS, inline - OPERATOR_PARAMS


def test_missing_function_is_a_clear_error() -> None:
    task = next(t for t in builtin_tasks() if t["metadata"]["name"] == "pvc-backup")
    with pytest.raises(KeyError, match="Function update-status"):
        build_job(
            name="j",
            namespace="n",
            task=task,
            functions={"pvc-backup": builtin_functions()[0]},
            inputs={},
            invoker_params={},
            labels={},
            owner={},
            service_account="sa",
            run_as_user=0,
        )


def test_backup_job_pods_pass_pod_security_restricted() -> None:
    # Job pods set neither seccompProfile nor runAsNonRoot: a restricted namespace refused them
    pod = _pvc_backup_job()["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


def test_a_root_job_pod_keeps_root_and_says_why_restricted_refuses_it() -> None:
    sc = pod_security_context({"runAsUser": 0, "runAsGroup": 0})
    assert sc["runAsUser"] == 0 and "runAsNonRoot" not in sc  # ownership restore: baseline
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    given = pod_security_context({"runAsUser": 1000, "runAsNonRoot": False})
    assert given["runAsNonRoot"] is False  # runtimeSettings win key by key
