"""Backups that cannot succeed end Failed with a message a person can act on, and never
report a snapshot that is not complete: wrong password, a path the pod does not have,
storage that stopped answering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner, RunningContainer
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
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster


async def _world(
    kube: Kube,
    ns: str,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
    repository: JSON,
    paths: list[str] | None = None,
) -> RunningContainer:
    await create_objects(
        kube,
        ns,
        [
            (SECRETS, secret()),
            (REPOSITORIES, repository),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, backup_configuration(restic_bin, paths=paths)),
        ],
    )
    await ready_invoker(kube, ns)
    (pod,) = await injected_pods(kube, ns, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"file.bin": os.urandom(30_000)})
    return await runner.run(pod, "stash", volumes={"data": data})


async def test_wrong_repository_password(
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
    other = host_restic(
        {"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s", password="other"
    )
    await other.init()  # the repository exists, with another password than the secret's
    sidecar = await _world(
        rawkube, namespace, runner, restic_bin, tmp_path, local_repository(repo_dir)
    )

    session = await finished(rawkube, namespace, await trigger(rawkube, namespace), logs=[sidecar])
    assert session["status"]["phase"] == "Failed"
    host = host_stats(session)["host-0"]
    assert host["phase"] == "Failed" and "snapshots" not in host
    assert "wrong password" in host["error"]
    assert "RESTIC_PASSWORD" in host["error"]  # the hint says which key to fix
    init = condition(session, "BackendRepositoryInitialized")
    assert init["status"] == "False" and "wrong password" in init["message"]
    assert await other.snapshots() == []
    assert PASSWORD not in sidecar.logs()
    assert sidecar.exit_code is None, "a failed backup never stops the sidecar"


async def test_a_path_the_pod_does_not_have(
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
    sidecar = await _world(
        rawkube,
        namespace,
        runner,
        restic_bin,
        tmp_path,
        local_repository(repo_dir),
        paths=["/data", "/var/lib/stash-absent"],
    )

    session = await finished(rawkube, namespace, await trigger(rawkube, namespace), logs=[sidecar])
    assert session["status"]["phase"] == "Failed"
    host = host_stats(session)["host-0"]
    assert host["phase"] == "Failed" and "snapshots" not in host
    assert "path /var/lib/stash-absent does not exist in the pod" in host["error"]
    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    assert await restic.snapshots() == [], "nothing is backed up when a path is missing"
    # Retention never runs for a failed host.
    conds = {c["type"] for c in session["status"].get("conditions") or []}
    assert "RetentionPolicyApplied" not in conds


async def test_storage_that_stopped_answering(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    rest_server_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    base = tmp_path / "rest"
    server = RestServer(rest_server_bin, base / "data", base / "rest.log")
    server.start()
    try:
        backend = {"rest": {"url": f"{server.url}/web"}}
        sidecar = await _world(
            rawkube, namespace, runner, restic_bin, tmp_path, repository_for(backend)
        )
        first = await finished(
            rawkube, namespace, await trigger(rawkube, namespace), logs=[sidecar]
        )
        assert first["status"]["phase"] == "Succeeded", first["status"]

        server.stop()
        session = await finished(
            rawkube, namespace, await trigger(rawkube, namespace), logs=[sidecar]
        )
        assert session["status"]["phase"] == "Failed"
        host = host_stats(session)["host-0"]
        assert host["phase"] == "Failed" and "snapshots" not in host
        assert "connection refused" in host["error"]
        assert "check the endpoint/URL in spec.backend" in host["error"]  # the hint

        server = RestServer(rest_server_bin, base / "data", base / "rest.log", port=server.port)
        server.start()
        restic = host_restic(backend, restic_bin, tmp_path / "s")
        (only,) = await restic.snapshots()
        assert only.short_id == host_stats(first)["host-0"]["snapshots"][0]["name"]
    finally:
        server.stop()
