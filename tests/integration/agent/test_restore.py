"""A RestoreSession targeting a Deployment: the operator injects `stash-init`, the init
container restores the backed-up files into an empty volume byte for byte, records its
host, and a restarted pod does not restore again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    agent_env,
    backup_configuration,
    create_objects,
    deployment,
    finished,
    injected_pods,
    local_repository,
    read_tree,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def restore_session(restic_bin: str, rules: list[dict[str, Any]]) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "restore"},
        "spec": {
            "repository": {"name": "repo"},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "rules": rules,
            },
            "runtimeSettings": {"container": {"env": agent_env(restic_bin)}},
        },
    }


async def _restore_phase(kube: Kube, ns: str) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(RESTORESESSIONS, "restore", ns)
        final = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Unknown")
        return obj if final else None

    return await eventually(probe, timeout=60, what="RestoreSession final")


async def _backed_up(
    kube: Kube, ns: str, runner: PodRunner, restic_bin: str, tmp_path: Path
) -> dict[str, bytes]:
    await create_objects(
        kube,
        ns,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(tmp_path / "repo")),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, backup_configuration(restic_bin)),
        ],
    )
    await ready_invoker(kube, ns)
    (pod,) = await injected_pods(kube, ns, "web", "stash")
    data = tmp_path / "data"
    write_tree(
        data,
        {
            "db/table.bin": os.urandom(150_000),
            "db/empty": b"",
            "conf/settings.json": b'{"mode": "production"}\n',
        },
    )
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    session = await finished(kube, ns, await trigger(kube, ns), logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", session["status"]
    await sidecar.stop(grace=5)
    return read_tree(data)


async def test_init_container_restores_into_an_empty_volume(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    original = await _backed_up(rawkube, namespace, runner, restic_bin, tmp_path)

    await rawkube.create(
        RESTORESESSIONS, restore_session(restic_bin, [{"paths": ["/data"]}]), namespace
    )
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash-init")
    assert pod["spec"]["initContainers"][0]["name"] == "stash-init"
    empty = tmp_path / "new-volume"
    empty.mkdir()
    init = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await init.wait(120) == 0, init.logs()
    assert read_tree(empty) == original

    restore = await _restore_phase(rawkube, namespace)
    assert restore["status"]["phase"] == "Succeeded", restore["status"]
    (host,) = restore["status"]["stats"]
    assert host["hostname"] == "host-0" and host["phase"] == "Succeeded"

    # The pod restarts: its host already reported, so nothing is restored again.
    (empty / "db" / "table.bin").unlink()
    again = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await again.wait(60) == 0, again.logs()
    assert not (empty / "db" / "table.bin").exists()


@pytest.mark.parametrize(
    ("rules", "why"),
    [
        ([{"targetHosts": ["host-0"]}], "neither paths nor snapshots"),
        ([], "has no rules"),  # upstream: silent success (docs/compatibility.md)
    ],
    ids=["rule-without-paths", "no-rules"],
)
async def test_a_rule_that_selects_nothing_fails_the_host_and_keeps_the_pod_in_init(
    rules: list[dict[str, Any]],
    why: str,
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    await _backed_up(rawkube, namespace, runner, restic_bin, tmp_path)
    await rawkube.create(RESTORESESSIONS, restore_session(restic_bin, rules), namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash-init")
    empty = tmp_path / "new-volume"
    empty.mkdir()
    init = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await init.wait(120) != 0
    assert why in init.logs()
    assert read_tree(empty) == {}

    restore = await _restore_phase(rawkube, namespace)
    assert restore["status"]["phase"] == "Failed"
    (host,) = restore["status"]["stats"]
    assert host["phase"] == "Failed" and why in host["error"]
    # A restart fails again with the recorded reason (the pod stays in Init).
    again = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await again.wait(60) != 0
    assert why in again.logs()
