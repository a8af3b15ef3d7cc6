"""A Deployment's injected sidecar backs up its volume when a BackupSession is triggered:
one snapshot per path in the repository, honest host stats, retention across sessions,
and the Repository status a user reads with `kubectl get repository`."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import Kube, Resource
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    PASSWORD,
    backup_configuration,
    condition,
    create_objects,
    deployment,
    finished,
    host_restic,
    host_stats,
    injected_pods,
    local_repository,
    ready_invoker,
    repository_for,
    repository_status,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.storage import S3_KEY_ID, S3_SECRET, MotoServer

pytestmark = pytest.mark.cluster

EVENTS = Resource("", "v1", "events", "Event")


async def test_deployment_backup_keeps_what_the_retention_policy_says(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    repo_dir = tmp_path / "repo"
    bc = backup_configuration(restic_bin, paths=["/data/app", "/data/conf"], keep_last=2)
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(repo_dir)),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(rawkube, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"app/db.bin": os.urandom(200_000), "conf/app.yaml": b"replicas: 1\n"})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})

    for round_ in range(3):
        write_tree(data, {f"app/round-{round_}.bin": os.urandom(10_000)})
        name = await trigger(rawkube, namespace)
        session = await finished(rawkube, namespace, name, logs=[sidecar])
        assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs())

    stats = host_stats(session)
    assert list(stats) == ["host-0"]
    host = stats["host-0"]
    assert host["phase"] == "Succeeded" and "error" not in host
    assert sorted(s["path"] for s in host["snapshots"]) == ["/data/app", "/data/conf"]
    assert all(s["fileStats"]["totalFiles"] >= 1 for s in host["snapshots"])

    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    stored = await restic.snapshots()
    assert {s["name"] for s in host["snapshots"]} <= {s.short_id for s in stored}
    assert Counter(s.paths for s in stored) == {("/data/app",): 2, ("/data/conf",): 2}
    assert {s.hostname for s in stored} == {"host-0"}

    for kind in (
        "RetentionPolicyApplied",
        "RepositoryIntegrityVerified",
        "RepositoryMetricsPushed",
    ):
        assert condition(session, kind)["status"] == "True", condition(session, kind)
    assert "removed 2 snapshot(s)" in condition(session, "RetentionPolicyApplied")["message"]

    repo = await repository_status(rawkube, namespace)
    assert repo["integrity"] is True
    assert repo["snapshotCount"] == 4
    assert repo["snapshotsRemovedOnLastCleanup"] == 2
    assert repo["totalSize"].endswith(("KiB", "MiB"))
    assert repo["lastBackupTime"] == session["metadata"]["creationTimestamp"]
    assert repo["firstBackupTime"] <= repo["lastBackupTime"]

    events = (await rawkube.list(EVENTS, namespace))["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == name}
    assert "HostBackupSucceeded" in reasons
    assert sidecar.exit_code is None, "the sidecar keeps running between sessions"


async def test_deployment_backup_to_s3(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    moto: MotoServer,
    tmp_path: Path,
) -> None:
    await run_operator()
    bucket = f"agent-{namespace}"[:63]
    moto.create_bucket(bucket)
    backend = {"s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": "web"}}
    keys = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret(**keys)),
            (REPOSITORIES, repository_for(backend)),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, backup_configuration(restic_bin)),
        ],
    )
    await ready_invoker(rawkube, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"index.html": b"<h1>hello</h1>", "img/logo.bin": os.urandom(50_000)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})

    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs())
    (snap,) = host_stats(session)["host-0"]["snapshots"]
    assert snap["path"] == "/data"
    assert condition(session, "BackendRepositoryInitialized")["status"] == "True"

    restic = host_restic(backend, restic_bin, tmp_path / "s", **keys)
    (stored,) = await restic.snapshots()
    assert stored.short_id == snap["name"] and stored.paths == ("/data",)
    assert (await repository_status(rawkube, namespace))["snapshotCount"] == 1
    assert S3_SECRET not in sidecar.logs() and PASSWORD not in sidecar.logs()
