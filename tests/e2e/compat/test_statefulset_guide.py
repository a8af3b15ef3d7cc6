"""Stash's guide "Backup and restore a StatefulSet" (docs/guides/workloads/statefulset),
applied in its shapes: a 3-replica StatefulSet whose volume comes from a
volumeClaimTemplate, a headless Service, a BackupConfiguration mounting that volume; a
RestoreSession into a recovered 3-replica StatefulSet; and "Customize Restore Process":
a 5-replica StatefulSet restored with rules `host-3, host-4 <- host-1` plus a catch-all.

Documented outcome: each replica backs up as `host-<ordinal>` (totalHosts 3); each
recovered replica gets its own replica's data; in the scaled-up StatefulSet replicas
0-2 get their own data and replicas 3 and 4 get host-1's (totalHosts 5).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import SECRETS, STATEFULSETS
from stash_dev.podrunner import PodRunner
from tests.e2e.compat.guides import (
    SERVICES,
    claim_path,
    headless_service,
    repository,
    restore_final,
    restore_stats,
    statefulset_with_claims,
    storage_secret,
    trigger,
    workload_backup,
    workload_restore,
)
from tests.integration.agent.conftest import (
    finished,
    host_stats,
    injected_pods,
    ready_invoker,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory

pytestmark = pytest.mark.cluster
PATH = "/srv/ledger"
VOLUME = "source-data"


async def _statefulset(kube: Kube, ns: str, name: str, replicas: int) -> None:
    await kube.create(SERVICES, headless_service(f"{name}-headless", name), ns)
    await kube.create(STATEFULSETS, statefulset_with_claims(name, replicas, VOLUME, PATH), ns)


async def _restore(
    kube: Kube, ns: str, runner: PodRunner, rs: JSON, app: str, replicas: int
) -> JSON:
    """Create the RestoreSession, run every replica's `stash-init`; the final object."""
    await kube.create(RESTORESESSIONS, rs, ns)
    pods = await injected_pods(kube, ns, app, "stash-init", count=replicas)
    inits = [await runner.run(pod, "stash-init") for pod in pods]
    codes = await asyncio.gather(*(i.wait(120) for i in inits))
    assert codes == [0] * replicas, [i.logs()[-2000:] for i in inits]
    return await restore_final(kube, ns, rs["metadata"]["name"], inits)


async def _data(kube: Kube, ns: str, app: str, ordinal: int) -> bytes:
    return (await claim_path(kube, ns, f"{VOLUME}-{app}-{ordinal}") / "data.txt").read_bytes()


async def test_statefulset_guide_per_replica_hosts_and_customized_restore(
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
    repo = repository("ledger-repo", tmp_path / "backups", "ledger")
    await rawkube.create(REPOSITORIES, repo, ns)
    await _statefulset(rawkube, ns, "ledger", 3)
    bc = workload_backup(
        "ledger-backup", "StatefulSet", "ledger", "ledger-repo", VOLUME, PATH, restic_bin
    )
    await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
    for i in range(3):  # what `echo $(POD_NAME) > data.txt` writes in each replica
        write_tree(await claim_path(rawkube, ns, f"{VOLUME}-ledger-{i}"), {"data.txt": b"%d" % i})
    await ready_invoker(rawkube, ns, "ledger-backup")

    pods = await injected_pods(rawkube, ns, "ledger", "stash", count=3)
    sidecars = [await runner.run(pod, "stash") for pod in pods]
    name = await trigger(rawkube, ns, "ledger-backup")
    session = await finished(rawkube, ns, name, timeout=180, logs=sidecars)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert session["status"]["targets"][0]["totalHosts"] == 3
    assert sorted(host_stats(session)) == ["host-0", "host-1", "host-2"]
    for sidecar in sidecars:
        await sidecar.stop(grace=5)

    # recovered_statefulset.yaml + restoresession.yaml: each replica gets its own data.
    await _statefulset(rawkube, ns, "ledger-recovered", 3)
    rs = workload_restore(
        "ledger-restore",
        "StatefulSet",
        "ledger-recovered",
        "ledger-repo",
        VOLUME,
        PATH,
        restic_bin,
    )
    done = await _restore(rawkube, ns, runner, rs, "ledger-recovered", 3)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["totalHosts"] == 3
    assert sorted(restore_stats(done)) == ["host-0", "host-1", "host-2"]
    for i in range(3):
        assert await _data(rawkube, ns, "ledger-recovered", i) == b"%d" % i

    # adv_statefulset.yaml + adv_restoresession.yaml: 5 replicas; 3 and 4 get host-1's.
    await _statefulset(rawkube, ns, "ledger-scaled", 5)
    rules = [
        {"targetHosts": ["host-3", "host-4"], "sourceHost": "host-1", "paths": [PATH]},
        {"targetHosts": [], "sourceHost": "", "paths": [PATH]},
    ]
    adv = workload_restore(
        "ledger-scaled-restore",
        "StatefulSet",
        "ledger-scaled",
        "ledger-repo",
        VOLUME,
        PATH,
        restic_bin,
        rules=rules,
    )
    adv["spec"]["driver"] = "Restic"
    done = await _restore(rawkube, ns, runner, adv, "ledger-scaled", 5)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["totalHosts"] == 5
    assert sorted(restore_stats(done)) == [f"host-{i}" for i in range(5)]
    got = [await _data(rawkube, ns, "ledger-scaled", i) for i in range(5)]
    assert got == [b"0", b"1", b"2", b"1", b"1"]
