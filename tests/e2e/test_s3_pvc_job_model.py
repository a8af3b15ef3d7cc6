"""Scenario S3 (stash-api.md §13): a stand-alone PVC backed up by a Job built from the
`pvc-backup` Task, then restored by `pvc-restore` into a new PVC from a
volumeClaimTemplate — real control plane, real restic, S3 on moto_server, and the Job
pods' exact containers run by the pod runner."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, Resource
from stash.kube.resources import JOBS, PODS, PVCS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import PASSWORD, agent_env, read_tree, write_tree
from tests.support.cluster import eventually
from tests.support.storage import S3_KEY_ID, S3_SECRET, MotoServer

pytestmark = pytest.mark.cluster
PVS = Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
FILES = {
    "a.txt": b"alpha\n",
    "dir/b.bin": bytes(range(256)) * 64,
    "dir/with space/ü.txt": "unicode ✓\n".encode(),
}


async def _claim_dir(kube: Kube, ns: str, claim: str) -> Path:
    async def bound() -> JSON | None:
        pvc = await kube.get(PVCS, claim, ns)
        return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None

    pvc = await eventually(bound, timeout=30, what=f"PVC {claim} bound")
    pv = await kube.get(PVS, pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


async def _run_job(kube: Kube, runner: PodRunner, ns: str, job: str) -> None:
    async def scheduled() -> JSON | None:
        pods = (await kube.list(PODS, ns, label_selector=f"job-name={job}"))["items"]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    pod = await eventually(scheduled, timeout=60, what=f"Job {job}'s pod scheduled")
    for container in await runner.run_pod(pod, report_status=True):
        code = await container.wait(timeout=180)
        assert code == 0, f"{container.container} exited {code}:\n{container.logs()[-3000:]}"

    async def complete() -> bool:
        status = (await kube.get(JOBS, job, ns)).get("status") or {}
        return bool(status.get("succeeded"))

    await eventually(complete, timeout=60, what=f"Job {job} complete")


async def test_pvc_backup_by_job_and_restore_into_new_pvc(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    moto: MotoServer,
    restic_bin: str,
    namespace: str,
) -> None:
    await run_operator()
    bucket = f"s3-{namespace[-6:]}"
    moto.create_bucket(bucket)
    await rawkube.create(
        SECRETS,
        {
            "metadata": {"name": "s3-secret"},
            "stringData": {
                "RESTIC_PASSWORD": PASSWORD,
                "AWS_ACCESS_KEY_ID": S3_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            },
        },
        namespace,
    )
    await rawkube.create(
        REPOSITORIES,
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "pvc-repo"},
            "spec": {
                "backend": {
                    "storageSecretName": "s3-secret",
                    "s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": "pvc"},
                }
            },
        },
        namespace,
    )
    claim = {
        "metadata": {"name": "data-pvc"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await rawkube.create(PVCS, claim, namespace)
    source = await _claim_dir(rawkube, namespace, "data-pvc")
    write_tree(source, FILES)
    # No images here: the container env puts the venv's `stash` and the test restic on
    # PATH (what the image's ENV does), and the pod runs as root because this host's
    # Python lives under /root, which uid 65535 (the job model's default) cannot read.
    container_env = {
        "container": {"env": agent_env(restic_bin)},
        "pod": {"securityContext": {"runAsUser": 0}},
    }
    await rawkube.create(
        BACKUPCONFIGURATIONS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "pvc-backup"},
            "spec": {
                "task": {"name": "pvc-backup"},
                "schedule": "0 * * * *",
                "repository": {"name": "pvc-repo"},
                "target": {
                    "ref": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "name": "data-pvc",
                    },
                    "volumeMounts": [{"name": "data-pvc", "mountPath": "/source/data"}],
                    "paths": ["/source/data"],
                },
                "retentionPolicy": {"name": "keep-last-3", "keepLast": 3, "prune": True},
                "runtimeSettings": container_env,
            },
        },
        namespace,
    )

    async def ready() -> JSON | None:
        bc = await rawkube.get(BACKUPCONFIGURATIONS, "pvc-backup", namespace)
        return bc if (bc.get("status") or {}).get("phase") == "Ready" else None

    bc = await eventually(ready, timeout=30, what="BackupConfiguration Ready")
    session = await create_backup_session(
        rawkube, bc, dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    )
    job = f"stash-backup-{session}-0"
    await eventually(lambda: _exists(rawkube, JOBS, job, namespace), timeout=30, what=f"Job {job}")
    pod_spec = (await rawkube.get(JOBS, job, namespace))["spec"]["template"]["spec"]
    assert [c["name"] for c in pod_spec["initContainers"]] == ["pvc-backup-0"]
    assert [c["name"] for c in pod_spec["containers"]] == ["update-status-1"]
    assert "--backup-paths=/source/data" in pod_spec["initContainers"][0]["args"]
    assert "--hostname=host-0" in pod_spec["initContainers"][0]["args"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["stash-volume"]["persistentVolumeClaim"]["claimName"] == "data-pvc"
    await _run_job(rawkube, runner, namespace, job)

    async def succeeded() -> JSON | None:
        s = await rawkube.get(BACKUPSESSIONS, session, namespace)
        phase = (s.get("status") or {}).get("phase")
        assert phase != "Failed", s["status"]
        return s if phase == "Succeeded" else None

    done = await eventually(succeeded, timeout=60, what="the BackupSession Succeeded")
    (host,) = done["status"]["targets"][0]["stats"]
    assert host["hostname"] == "host-0" and host["snapshots"][0]["path"] == "/source/data"

    await rawkube.create(
        RESTORESESSIONS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "pvc-restore"},
            "spec": {
                "task": {"name": "pvc-restore"},
                "repository": {"name": "pvc-repo"},
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
                    "rules": [{"paths": ["/source/data"]}],
                },
                "runtimeSettings": container_env,
            },
        },
        namespace,
    )
    restore_job = "stash-restore-pvc-restore-0-0"
    await eventually(
        lambda: _exists(rawkube, JOBS, restore_job, namespace), timeout=30, what="the restore Job"
    )
    env = (await rawkube.get(JOBS, restore_job, namespace))["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {"name": "POD_ORDINAL", "value": "0"} in env
    restored_dir = await _claim_dir(rawkube, namespace, "restored")
    await _run_job(rawkube, runner, namespace, restore_job)

    async def restored() -> JSON | None:
        rs = await rawkube.get(RESTORESESSIONS, "pvc-restore", namespace)
        phase = (rs.get("status") or {}).get("phase")
        assert phase not in ("Failed", "Unknown"), rs["status"]
        return rs if phase == "Succeeded" else None

    rs = await eventually(restored, timeout=60, what="the RestoreSession Succeeded")
    assert rs["status"]["stats"][0]["hostname"] == "host-0"
    assert read_tree(restored_dir) == FILES


async def _exists(kube: Kube, res: Resource, name: str, ns: str) -> bool:
    try:
        await kube.get(res, name, ns)
    except Exception:
        return False
    return True
