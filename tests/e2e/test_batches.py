"""BackupBatch and RestoreBatch end to end (stash-api.md §1.6, issue #14 acceptance): a
PVC member (a Job) and a Deployment member (its sidecar) sharing one Repository on S3
(moto_server); real control plane, real restic, pods run by the pod runner.

* Sequential: the second member stays Pending until the first is final; one
  Repository, two hosts; the session Succeeded with memberConditions on the batch;
  then a RestoreBatch restores both members byte for byte.
* Parallel: both members start at once; a failing first member fails the session,
  and the final Event names that member.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from stash.contract.resources import (
    BACKUPBATCHES,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTOREBATCHES,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, EVENTS, JOBS, PVCS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.e2e.jobs import claim_dir, exists, run_job
from tests.integration.agent.conftest import (
    PASSWORD,
    agent_env,
    condition,
    deployment,
    finished,
    injected_pods,
    read_tree,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually
from tests.support.storage import S3_KEY_ID, S3_SECRET, MotoServer

pytestmark = pytest.mark.cluster

RUNTIME = None  # set per test: the agent env (PATH to stash and restic) and root for Jobs


async def _world(kube: Kube, ns: str, moto: MotoServer) -> str:
    """Storage Secret, the shared Repository `wp-repo` on a fresh bucket, the PVC
    `data` (with files) and the Deployment `web`."""
    bucket = f"bb-{ns[-6:]}"
    moto.create_bucket(bucket)
    keys = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    await kube.create(
        SECRETS,
        {"metadata": {"name": "s3-secret"}, "stringData": {"RESTIC_PASSWORD": PASSWORD, **keys}},
        ns,
    )
    await kube.create(
        REPOSITORIES,
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "wp-repo"},
            "spec": {
                "backend": {
                    "storageSecretName": "s3-secret",
                    "s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": "wp"},
                }
            },
        },
        ns,
    )
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await kube.create(PVCS, claim, ns)
    await kube.create(DEPLOYMENTS, deployment(), ns)
    return bucket


def _runtime(restic_bin: str) -> JSON:
    return {
        "container": {"env": agent_env(restic_bin)},
        "pod": {"securityContext": {"runAsUser": 0}},
    }


def backup_batch(order: str, restic_bin: str, pvc_paths: list[str]) -> JSON:
    runtime = _runtime(restic_bin)
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"name": "wp"},
        "spec": {
            "schedule": "0 0 1 1 *",  # never fires during a test; sessions are triggered
            "executionOrder": order,
            "repository": {"name": "wp-repo"},
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            "members": [
                {
                    "task": {"name": "pvc-backup"},
                    "target": {
                        "ref": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "name": "data",
                        },
                        "paths": pvc_paths,
                        "volumeMounts": [{"name": "data", "mountPath": "/source/data"}],
                    },
                    "runtimeSettings": runtime,
                },
                {
                    "target": {
                        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "paths": ["/data"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    },
                    "runtimeSettings": runtime,
                },
            ],
        },
    }


async def _ready_batch(kube: Kube, ns: str) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPBATCHES, "wp", ns)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    return await eventually(probe, timeout=60, what="BackupBatch wp Ready")


async def _trigger(kube: Kube, ns: str) -> str:
    batch = await kube.get(BACKUPBATCHES, "wp", ns)
    return await create_backup_session(
        kube, {**batch, "kind": "BackupBatch"}, dt.datetime.now(dt.UTC)
    )


async def _session(kube: Kube, ns: str, name: str) -> JSON:
    return await kube.get(BACKUPSESSIONS, name, ns)


def _targets(session: JSON) -> list[JSON]:
    return list((session.get("status") or {}).get("targets") or [])


async def _start(
    kube: Kube,
    ns: str,
    runner: PodRunner,
    tmp_path: Path,
    restic_bin: str,
    order: str,
    paths: list[str],
) -> tuple[dict[str, bytes], dict[str, bytes], Any, str]:
    """Batch `wp` Ready, files in both members, the sidecar running, a session triggered."""
    source = await claim_dir(kube, ns, "data")
    pvc_files = {"pvc.bin": os.urandom(40_000), "sub/notes.txt": b"pvc member\n"}
    write_tree(source, pvc_files)
    await kube.create(BACKUPBATCHES, backup_batch(order, restic_bin, paths), ns)
    batch = await _ready_batch(kube, ns)
    members = batch["status"]["memberConditions"]
    assert [m["target"]["kind"] for m in members] == ["PersistentVolumeClaim", "Deployment"]
    for m in members:
        assert all(c["status"] == "True" for c in m["conditions"]), m
    (pod,) = await injected_pods(kube, ns, "web", "stash")
    args = next(c for c in pod["spec"]["containers"] if c["name"] == "stash")["args"]
    assert args[1:3] == ["--invoker-name=wp", "--invoker-kind=BackupBatch"]
    web_data = tmp_path / "web-data"
    web_files = {"site/index.html": b"<h1>wp</h1>\n", "uploads/img.bin": os.urandom(25_000)}
    write_tree(web_data, web_files)
    sidecar = await runner.run(pod, "stash", volumes={"data": web_data})
    return pvc_files, web_files, sidecar, await _trigger(kube, ns)


async def test_sequential_batch_backs_up_in_order_and_restores_byte_for_byte(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    moto: MotoServer,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    await _world(rawkube, namespace, moto)
    pvc_files, web_files, sidecar, name = await _start(
        rawkube, namespace, runner, tmp_path, restic_bin, "Sequential", ["/source/data"]
    )
    job = f"stash-backup-{name}-0"
    await eventually(lambda: exists(rawkube, JOBS, job, namespace), timeout=30, what=f"Job {job}")
    # While the first member runs, the second is Pending: no totalHosts, so its sidecar
    # has nothing to do, and no Job of its own.
    session = await _session(rawkube, namespace, name)
    first, second = _targets(session)
    assert first["totalHosts"] == 1 and "totalHosts" not in second
    assert first["preBackupActions"] == ["InitializeBackendRepository"]
    await run_job(rawkube, runner, namespace, job)
    done = await finished(rawkube, namespace, name, timeout=180, logs=[sidecar])
    assert done["status"]["phase"] == "Succeeded", done["status"]
    first, second = _targets(done)
    # No restic check is due on a repository without a recorded backup
    # (docs/compatibility.md); the integrity condition is still recorded.
    assert second["postBackupActions"] == ["ApplyRetentionPolicy", "SendRepositoryMetrics"]
    verified = condition(done, "RepositoryIntegrityVerified")
    assert (verified["status"], verified["reason"]) == ("True", "RepositoryIntegrityCheckNotDue")
    assert [h["hostname"] for h in first["stats"]] == ["data"]
    assert [h["hostname"] for h in second["stats"]] == ["web"]
    # The second member started only after the first had finished.
    assert second["stats"][0]["phase"] == "Succeeded"
    await sidecar.stop(grace=5)

    # Restore both members: the PVC member into a new PVC (a Job), the Deployment
    # member into an empty volume (its init-container).
    runtime = _runtime(restic_bin)
    await rawkube.create(
        RESTOREBATCHES,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreBatch",
            "metadata": {"name": "rb"},
            "spec": {
                "repository": {"name": "wp-repo"},
                "executionOrder": "Parallel",
                "members": [
                    {
                        "task": {"name": "pvc-restore"},
                        "target": {
                            "volumeMounts": [{"name": "restored", "mountPath": "/source/data"}],
                            "volumeClaimTemplates": [
                                {
                                    "metadata": {"name": "restored"},
                                    "spec": {
                                        "accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": "1Gi"}},
                                    },
                                }
                            ],
                            "rules": [{"paths": ["/source/data"], "sourceHost": "data"}],
                        },
                        "runtimeSettings": runtime,
                    },
                    {
                        "target": {
                            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "rules": [{"paths": ["/data"]}],
                        },
                        "runtimeSettings": runtime,
                    },
                ],
            },
        },
        namespace,
    )
    restore_job = "stash-restore-rb-0-0"
    await eventually(
        lambda: exists(rawkube, JOBS, restore_job, namespace), timeout=30, what="the restore Job"
    )
    restored_dir = await claim_dir(rawkube, namespace, "restored")
    await run_job(rawkube, runner, namespace, restore_job)
    assert read_tree(restored_dir) == pvc_files
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash-init")
    init_args = pod["spec"]["initContainers"][0]["args"]
    assert init_args[1:3] == ["--invoker-kind=RestoreBatch", "--invoker-name=rb"]
    empty = tmp_path / "web-restored"
    empty.mkdir()
    init = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await init.wait(120) == 0, init.logs()
    assert read_tree(empty) == web_files

    async def restored() -> JSON | None:
        rb = await rawkube.get(RESTOREBATCHES, "rb", namespace)
        phase = (rb.get("status") or {}).get("phase")
        assert phase not in ("Failed", "Unknown"), rb["status"]
        return rb if phase == "Succeeded" else None

    rb = await eventually(restored, timeout=60, what="the RestoreBatch Succeeded")
    hosts = [[s["hostname"] for s in m["stats"]] for m in rb["status"]["members"]]
    assert hosts == [["host-0"], ["web"]]


async def test_parallel_batch_runs_members_at_once_and_names_the_failing_member(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    moto: MotoServer,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    await _world(rawkube, namespace, moto)
    _, _, sidecar, name = await _start(
        rawkube, namespace, runner, tmp_path, restic_bin, "Parallel", ["/source/missing"]
    )
    job = f"stash-backup-{name}-0"
    await eventually(lambda: exists(rawkube, JOBS, job, namespace), timeout=30, what=f"Job {job}")

    async def both_started() -> bool:
        targets = _targets(await _session(rawkube, namespace, name))
        return len(targets) == 2 and all("totalHosts" in t for t in targets)

    await eventually(both_started, timeout=30, what="both members initiated at once")
    await run_job(rawkube, runner, namespace, job)
    done = await finished(rawkube, namespace, name, timeout=180, logs=[sidecar])
    assert done["status"]["phase"] == "Failed", done["status"]
    first, second = _targets(done)
    assert first["phase"] == "Failed" and second["phase"] == "Succeeded"
    assert "/source/missing" in first["stats"][0]["error"]

    async def final_event() -> list[JSON]:
        items = (await rawkube.list(EVENTS, namespace))["items"]
        return [e for e in items if e.get("reason") == "BackupSessionFailed"]

    (event,) = await eventually(final_event, timeout=30, what="the BackupSessionFailed Event")
    assert "member 0 (PersistentVolumeClaim data): host data:" in event["message"]
