"""A StatefulSet's replicas each back up their own volume as host-<ordinal>, one at a
time, and exactly one of them (the one that completes the session) applies retention."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import Kube
from stash.kube.resources import SECRETS, STATEFULSETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    backup_configuration,
    condition,
    create_objects,
    finished,
    host_restic,
    host_stats,
    injected_pods,
    local_repository,
    ready_invoker,
    secret,
    statefulset,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory

pytestmark = pytest.mark.cluster

POST_ACTIONS_LINE = "completes the target; running post-backup actions"


async def test_every_replica_backs_up_its_own_host_and_one_applies_retention(
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
    bc = backup_configuration(restic_bin, kind="StatefulSet", target="db", keep_last=3)
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(repo_dir)),
            (STATEFULSETS, statefulset("db", replicas=3)),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(rawkube, namespace)
    pods = await injected_pods(rawkube, namespace, "db", "stash", count=3)
    sidecars = []
    contents: dict[str, bytes] = {}
    for pod in pods:
        ordinal = pod["metadata"]["name"].rsplit("-", 1)[1]
        data = tmp_path / f"data-{ordinal}"
        contents[f"host-{ordinal}"] = os.urandom(20_000)
        write_tree(data, {"table.db": contents[f"host-{ordinal}"]})
        sidecars.append(await runner.run(pod, "stash", volumes={"data": data}))

    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, timeout=180, logs=sidecars)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert session["status"]["targets"][0]["totalHosts"] == 3
    stats = host_stats(session)
    assert sorted(stats) == ["host-0", "host-1", "host-2"]
    for host, entry in stats.items():
        assert entry["phase"] == "Succeeded", entry
        (snap,) = entry["snapshots"]
        assert snap["path"] == "/data", host

    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    stored = await restic.snapshots()
    assert sorted(s.hostname for s in stored) == ["host-0", "host-1", "host-2"]

    ran_retention = [s for s in sidecars if POST_ACTIONS_LINE in s.logs()]
    assert len(ran_retention) == 1, [s.logs()[-2000:] for s in sidecars]
    applied = condition(session, "RetentionPolicyApplied")
    assert applied["status"] == "True"
    # The host named in the condition is the one whose pod ran it.
    winner = ran_retention[0].pod_key.rsplit("-", 1)[1]
    assert f"host host-{winner} applied" in applied["message"]
    # Each host's snapshot holds that replica's own file.
    restored = tmp_path / "restored"
    for host in stats:
        await restic.restore(str(restored / host), "latest", host=host, paths=["/data"])
        assert (restored / host / "data" / "table.db").read_bytes() == contents[host]
