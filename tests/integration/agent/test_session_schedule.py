"""What a session records when it skips restic runs it does not need (issue #19): the
init probe once the Repository's status records a backup, `restic check` between two
checks of the operator's schedule (but always after a failed session), and `restic
stats` when the size is known from the backup itself. Every session still records
retention, integrity and the repository's size; a repository deleted behind stash's
back fails the host with a message that says so."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash.restic.models import parse_bytes
from stash_dev.podrunner import PodRunner, RunningContainer
from tests.integration.agent.conftest import (
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
    repository_status,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory

pytestmark = pytest.mark.cluster


async def _setup(
    rawkube: Kube, namespace: str, runner: PodRunner, restic_bin: str, tmp_path: Path
) -> tuple[Path, Path, RunningContainer]:
    repo_dir = tmp_path / "repo"
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(repo_dir)),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, backup_configuration(restic_bin, keep_last=10)),
        ],
    )
    await ready_invoker(rawkube, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"app/db.bin": os.urandom(300_000)})
    return repo_dir, data, await runner.run(pod, "stash", volumes={"data": data})


_TRIGGERS = iter(range(1_000_000))


async def _session(rawkube: Kube, namespace: str, sidecar: RunningContainer) -> JSON:
    # Each its own name (a quick failure could leave the next one in the same second).
    name = await trigger(rawkube, namespace, offset=next(_TRIGGERS))
    return await finished(rawkube, namespace, name, logs=[sidecar])


async def test_sessions_between_checks_record_integrity_and_size_without_rerunning_restic(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()  # the default schedule: one check a day (none is due here)
    repo_dir, data, sidecar = await _setup(rawkube, namespace, runner, restic_bin, tmp_path)
    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")

    first = await _session(rawkube, namespace, sidecar)
    assert first["status"]["phase"] == "Succeeded", (first["status"], sidecar.logs())
    verified = condition(first, "RepositoryIntegrityVerified")  # a new repository
    assert verified["status"] == "True" and "this session created" in verified["message"]
    assert "did not run" in condition(first, "RetentionPolicyApplied")["message"]
    checked_at = (await repository_status(rawkube, namespace))["lastIntegrityCheckTime"]

    write_tree(data, {"app/more.bin": os.urandom(200_000)})
    second = await _session(rawkube, namespace, sidecar)
    assert second["status"]["phase"] == "Succeeded", (second["status"], sidecar.logs())
    verified = condition(second, "RepositoryIntegrityVerified")
    assert verified["status"] == "True"
    assert verified["reason"] == "RepositoryIntegrityCheckNotDue", verified
    assert checked_at in verified["message"]
    initialized = condition(second, "BackendRepositoryInitialized")
    assert initialized["status"] == "True" and "not probed" in initialized["message"]
    retention = condition(second, "RetentionPolicyApplied")
    assert retention["status"] == "True" and "kept all 2 snapshot(s)" in retention["message"]

    repo = await repository_status(rawkube, namespace)
    assert repo["integrity"] is True
    assert repo["lastIntegrityCheckTime"] == checked_at
    assert repo["snapshotCount"] == 2 == len(await restic.snapshots())
    stored = (await restic.stats()).total_size
    assert abs(parse_bytes(repo["totalSize"]) - stored) <= stored * 0.01, (repo, stored)
    assert repo["lastBackupTime"] == second["metadata"]["creationTimestamp"]


async def test_a_repository_deleted_behind_stash_fails_clearly_and_the_next_session_checks(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    repo_dir, _data, sidecar = await _setup(rawkube, namespace, runner, restic_bin, tmp_path)
    first = await _session(rawkube, namespace, sidecar)
    assert first["status"]["phase"] == "Succeeded", (first["status"], sidecar.logs())

    aside = tmp_path / "aside"
    aside.mkdir()
    for entry in list(repo_dir.iterdir()):  # the mounted directory itself stays
        shutil.move(str(entry), aside / entry.name)
    gone = await _session(rawkube, namespace, sidecar)
    assert gone["status"]["phase"] == "Failed"
    error = host_stats(gone)["host-0"]["error"]
    assert "deleted or moved outside stash" in error, error
    assert "1 snapshot(s)" in error, error
    assert not any(repo_dir.iterdir()), "no empty repository was created in its place"

    for entry in list(aside.iterdir()):
        shutil.move(str(entry), repo_dir / entry.name)
    back = await _session(rawkube, namespace, sidecar)
    assert back["status"]["phase"] == "Succeeded", (back["status"], sidecar.logs())
    verified = condition(back, "RepositoryIntegrityVerified")
    assert verified["reason"] == "SuccessfullyVerifiedRepositoryIntegrity", verified


async def test_interval_zero_checks_in_every_session(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator(integrity_check_interval=0)
    _repo_dir, _data, sidecar = await _setup(rawkube, namespace, runner, restic_bin, tmp_path)
    for _ in range(2):
        session = await _session(rawkube, namespace, sidecar)
        assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs())
        verified = condition(session, "RepositoryIntegrityVerified")
        assert verified["reason"] == "SuccessfullyVerifiedRepositoryIntegrity", verified
