"""Stash's guide "Backup and restore a stand-alone PVC" (docs/guides/volumes/pvc), applied
in its shapes: a ReadWriteMany claim bound by label selector to a pre-made volume (an
NFS volume in the guide, a hostPath one here), two pods' data in sub-paths of it, a
BackupConfiguration with Task `pvc-backup` naming only the claim (no paths, no
volumeMounts), and a RestoreSession with Task `pvc-restore` and the rule
`snapshots: ["latest"]` restoring into the same, existing claim. The Repository is a
local backend, so this is also the job model with a local backend (issue #13 item 4).

Documented outcome: a backup Job whose snapshot holds the claim's whole content (as
mounted at the default `/stash-data`), host `host-0`; after the data is deleted, a
restore Job puts every file back into the existing claim; both sessions Succeed.
The two pods that write the data are not created: the test writes what they would.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import JOBS, PVCS, PVS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.e2e.compat.guides import (
    claim_path,
    repository,
    restore_final,
    restore_stats,
    runtime,
    storage_secret,
    trigger,
)
from tests.e2e.jobs import exists, run_job
from tests.integration.agent.conftest import (
    finished,
    host_stats,
    read_tree,
    ready_invoker,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster
FILES = {
    "pod-1/data/hello.txt": b"hello from pod 1.\n",
    "pod-2/data/hello.txt": b"hello from pod 2.\n",
}
CLAIM_REF = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "vault-pvc"}


def volume(name: str, label: str, path: Path) -> JSON:
    """`pv.yaml`: a 1Gi ReadWriteMany volume labelled for the claim's selector."""
    path.mkdir(parents=True, exist_ok=True)
    return {
        "metadata": {"name": name, "labels": {"app": label}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "hostPath": {"path": str(path)},
        },
    }


def claim(name: str, label: str) -> JSON:
    """`pvc.yaml`: ReadWriteMany, no storage class, selects the volume by label."""
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "resources": {"requests": {"storage": "1Gi"}},
            "selector": {"matchLabels": {"app": label}},
        },
    }


async def _job(kube: Kube, runner: PodRunner, ns: str, job: str, invoker: tuple[Any, str]) -> None:
    """Run the Job's pod once it exists (on timeout: the invoker's status says why)."""
    try:
        await eventually(lambda: exists(kube, JOBS, job, ns), timeout=30, what=f"Job {job}")
    except AssertionError as exc:
        status = (await kube.get(*invoker, ns)).get("status")
        jobs = [j["metadata"]["name"] for j in (await kube.list(JOBS, ns))["items"]]
        raise AssertionError(f"{exc}: {status} jobs={jobs}") from None
    await run_job(kube, runner, ns, job)


async def test_pvc_guide_backs_up_the_claim_by_job_and_restores_into_it(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    ns = namespace
    label = f"nfs-{ns[-6:]}"
    pv_name = f"vault-pv-{ns[-6:]}"
    await rawkube.create(SECRETS, storage_secret(), ns)
    await rawkube.create(REPOSITORIES, repository("vault-repo", tmp_path / "backups", "vault"), ns)
    await rawkube.create(PVS, volume(pv_name, label, tmp_path / "nfs"))
    try:
        await rawkube.create(PVCS, claim("vault-pvc", label), ns)
        data = await claim_path(rawkube, ns, "vault-pvc")
        write_tree(data, FILES)
        bc: JSON = {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "vault-backup"},
            "spec": {
                "task": {"name": "pvc-backup"},
                "repository": {"name": "vault-repo"},
                "schedule": "*/5 * * * *",
                "target": {"ref": CLAIM_REF},
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                "runtimeSettings": runtime(restic_bin, job=True),
            },
        }
        await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
        await ready_invoker(rawkube, ns, "vault-backup")
        session = await trigger(rawkube, ns, "vault-backup")
        job = f"stash-backup-{session}-0"
        await _job(rawkube, runner, ns, job, (BACKUPSESSIONS, session))
        done = await finished(rawkube, ns, session, timeout=60)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        (host,) = host_stats(done).values()
        assert host["hostname"] == "host-0"
        assert [s["path"] for s in host["snapshots"]] == ["/stash-data"]

        # The data is lost; the RestoreSession puts the latest snapshot back into the claim.
        for child in data.iterdir():
            shutil.rmtree(child)
        rs: JSON = {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "vault-restore"},
            "spec": {
                "task": {"name": "pvc-restore"},
                "repository": {"name": "vault-repo"},
                "target": {
                    "ref": CLAIM_REF,
                    "rules": [{"snapshots": ["latest"]}],
                },
                "runtimeSettings": runtime(restic_bin, job=True),
            },
        }
        await rawkube.create(RESTORESESSIONS, rs, ns)
        job = "stash-restore-vault-restore-0"
        await _job(rawkube, runner, ns, job, (RESTORESESSIONS, "vault-restore"))
        restored = await restore_final(rawkube, ns, "vault-restore")
        assert restored["status"]["phase"] == "Succeeded", restored["status"]
        assert list(restore_stats(restored)) == ["host-0"]
        assert read_tree(data) == FILES
    finally:
        with contextlib.suppress(NotFound):
            await rawkube.delete(PVS, pv_name)
