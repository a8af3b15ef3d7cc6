"""Stash's guide "Backup and restore a Deployment" (docs/guides/workloads/deployment),
applied in its shapes: a 3-replica Deployment on a PVC, a BackupConfiguration for its
volume, a RestoreSession into a recovered 3-replica Deployment on a new PVC whose rule
names the path with a trailing slash.

Documented outcome: the sidecar is injected into every replica, one BackupSession
Succeeds with one host (`host-0`) and one snapshot of the path, the Repository reports
it; the recovered Deployment's pods get `stash-init`, the RestoreSession Succeeds with
host `host-0` and the new PVC holds the backed-up files.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, PVCS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.e2e.compat.guides import (
    busybox_template,
    repository,
    restore_final,
    restore_stats,
    storage_secret,
    trigger,
    workload_backup,
    workload_restore,
)
from tests.e2e.jobs import claim_dir
from tests.integration.agent.conftest import (
    finished,
    host_stats,
    injected_pods,
    read_tree,
    ready_invoker,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster
PATH = "/srv/shop"


def claim(name: str, storage_class: str | None = None) -> JSON:
    """`pvc.yaml` (and the claim of `recovered_deployment.yaml`, class `standard`)."""
    spec: JSON = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def deployment(name: str, claim_name: str, command: list[str] | None = None) -> JSON:
    """`deployment.yaml` / `recovered_deployment.yaml`: 3 replicas, the PVC at PATH."""
    volume = {"name": "source-data", "persistentVolumeClaim": {"claimName": claim_name}}
    extra = {"command": command} if command else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": busybox_template(name, volume, PATH, **extra),
        },
    }


async def test_deployment_guide_backs_up_one_host_and_restores_into_a_new_claim(
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
    for res, body in (
        (SECRETS, storage_secret()),
        (REPOSITORIES, repository("shop-repo", tmp_path / "backups", "shop")),
        (PVCS, claim("shop-data")),
        (
            DEPLOYMENTS,
            deployment(
                "shop", "shop-data", ["/bin/sh", "-c", f"echo sample_data > {PATH}/data.txt"]
            ),
        ),
        (
            BACKUPCONFIGURATIONS,
            workload_backup(
                "shop-backup", "Deployment", "shop", "shop-repo", "source-data", PATH, restic_bin
            ),
        ),
    ):
        await rawkube.create(res, body, ns)
    original = {"data.txt": b"sample_data\n", "orders/2026.bin": os.urandom(40_000)}
    write_tree(await claim_dir(rawkube, ns, "shop-data"), original)
    await ready_invoker(rawkube, ns, "shop-backup")

    # Every replica carries the sidecar; they share the claim; only the leader backs up.
    pods = await injected_pods(rawkube, ns, "shop", "stash", count=3)
    # "Verify Sidecar": container `stash` running `run-backup` for the invoker.
    sidecar_spec = next(c for c in pods[0]["spec"]["containers"] if c["name"] == "stash")
    assert sidecar_spec["args"][:3] == [
        "run-backup",
        "--invoker-name=shop-backup",
        "--invoker-kind=BackupConfiguration",
    ]
    sidecars = [await runner.run(pod, "stash") for pod in pods]
    session = await finished(rawkube, ns, await trigger(rawkube, ns, "shop-backup"), logs=sidecars)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    (host,) = host_stats(session).values()
    assert host["hostname"] == "host-0" and [s["path"] for s in host["snapshots"]] == [PATH]

    async def reported() -> JSON | None:
        status = (await rawkube.get(REPOSITORIES, "shop-repo", ns)).get("status") or {}
        return status if status.get("snapshotCount") else None

    repo_status = await eventually(reported, timeout=30, what="the Repository's status")
    assert repo_status["integrity"] is True and repo_status["snapshotCount"] == 1
    for sidecar in sidecars:
        await sidecar.stop(grace=5)

    # Restore into a recovered Deployment on a new claim; the rule's path ends in "/".
    await rawkube.create(PVCS, claim("shop-restored-data", "standard"), ns)
    await rawkube.create(DEPLOYMENTS, deployment("shop-restored", "shop-restored-data"), ns)
    rs = workload_restore(
        "shop-restore",
        "Deployment",
        "shop-restored",
        "shop-repo",
        "source-data",
        PATH,
        restic_bin,
        rules=[{"paths": [f"{PATH}/"]}],
    )
    await rawkube.create(RESTORESESSIONS, rs, ns)
    pods = await injected_pods(rawkube, ns, "shop-restored", "stash-init", count=3)
    # "Verify Init-Container": `stash-init` first, running `restore` for the invoker.
    init_spec = pods[0]["spec"]["initContainers"][0]
    assert init_spec["name"] == "stash-init" and init_spec["args"][0] == "restore"
    assert "--invoker-name=shop-restore" in init_spec["args"]
    inits = [await runner.run(pod, "stash-init") for pod in pods]
    codes = await asyncio.gather(*(i.wait(120) for i in inits))
    assert codes == [0, 0, 0], [i.logs()[-2000:] for i in inits]
    done = await restore_final(rawkube, ns, "shop-restore", inits)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["totalHosts"] == 1
    assert list(restore_stats(done)) == ["host-0"]
    assert read_tree(await claim_dir(rawkube, ns, "shop-restored-data")) == original
