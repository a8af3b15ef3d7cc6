"""Restore rules in the job model (stash-api.md §1.1, §5.6; issue #13 item 3): a
RestoreSession with `volumeClaimTemplates` and 2 replicas makes one Job per ordinal,
each following the rule of its own host. Rules that name only `host-0` leave `host-1`
nothing to restore: its Job succeeds without touching its claim, the session Succeeds
with both hosts. Local backend, so the Jobs mount the repository (issue #13 item 4).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import JOBS, PVCS, SECRETS
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
from tests.integration.agent.conftest import finished, read_tree, ready_invoker, write_tree
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster
PATH = "/source/data"
FILES = {"a.txt": b"alpha\n", "dir/b.txt": b"beta\n"}


async def _job(kube: Kube, runner: PodRunner, ns: str, job: str) -> None:
    await eventually(lambda: exists(kube, JOBS, job, ns), timeout=30, what=f"Job {job}")
    await run_job(kube, runner, ns, job)


async def test_restore_jobs_follow_their_own_hosts_rule(
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
    await rawkube.create(SECRETS, storage_secret(), ns)
    await rawkube.create(REPOSITORIES, repository("repo", tmp_path / "backups", "pvc"), ns)
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    await rawkube.create(PVCS, {"metadata": {"name": "data"}, "spec": spec}, ns)
    write_tree(await claim_path(rawkube, ns, "data"), FILES)
    bc: JSON = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "pvc-backup"},
        "spec": {
            "task": {"name": "pvc-backup"},
            "repository": {"name": "repo"},
            "schedule": "0 0 1 1 *",
            "target": {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "volumeMounts": [{"name": "data", "mountPath": PATH}],
                "paths": [PATH],
            },
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            "runtimeSettings": runtime(restic_bin, job=True),
        },
    }
    await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
    await ready_invoker(rawkube, ns, "pvc-backup")
    session = await trigger(rawkube, ns, "pvc-backup")
    await _job(rawkube, runner, ns, f"stash-backup-{session}-0")
    done = await finished(rawkube, ns, session, timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]

    rs: JSON = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "restore"},
        "spec": {
            "task": {"name": "pvc-restore"},
            "repository": {"name": "repo"},
            "target": {
                "replicas": 2,
                "volumeMounts": [{"name": "restored-${POD_ORDINAL}", "mountPath": PATH}],
                "volumeClaimTemplates": [
                    {"metadata": {"name": "restored-${POD_ORDINAL}"}, "spec": spec}
                ],
                "rules": [{"targetHosts": ["host-0"], "paths": [PATH]}],
            },
            "runtimeSettings": runtime(restic_bin, job=True),
        },
    }
    await rawkube.create(RESTORESESSIONS, rs, ns)
    untouched = await claim_path(rawkube, ns, "restored-1")
    write_tree(untouched, {"own.txt": b"host-1's own data\n"})
    for ordinal in (0, 1):
        await _job(rawkube, runner, ns, f"stash-restore-restore-0-{ordinal}")
    restored = await restore_final(rawkube, ns, "restore")
    assert restored["status"]["phase"] == "Succeeded", restored["status"]
    assert restored["status"]["totalHosts"] == 2
    stats = restore_stats(restored)
    assert sorted(stats) == ["host-0", "host-1"]
    assert {s["phase"] for s in stats.values()} == {"Succeeded"}
    assert read_tree(await claim_path(rawkube, ns, "restored-0")) == FILES
    assert read_tree(untouched) == {"own.txt": b"host-1's own data\n"}
