"""Stash's guide "Backup and restore a DaemonSet" (docs/guides/workloads/daemonset),
applied in its shapes: a DaemonSet with a hostPath volume, a BackupConfiguration for
it, a RestoreSession into a recovered DaemonSet (another hostPath); plus restore rules
that name only one node (stash-api.md §1.1, upstream `RestoreOptionsForHost`).

Documented outcome: one host per node, named after the node (the stand-in kubelet has
`node-0` and `node-1`, so totalHosts 2); each recovered pod restores its own node's
data. With rules naming only `node-0`, `node-1` has nothing to restore: it succeeds
without touching its volume, and the RestoreSession Succeeds with both hosts.

The hostPath volumes are given to the pod runner as test directories (it would bind the
host's own path otherwise).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import DAEMONSETS, SECRETS
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
from tests.integration.agent.conftest import (
    finished,
    host_stats,
    injected_pods,
    read_tree,
    ready_invoker,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory

pytestmark = pytest.mark.cluster
PATH = "/srv/beacon"
VOLUME = "source-data"


def daemonset(name: str) -> JSON:
    """`daemon.yaml` / `recovered_daemon.yaml`: a hostPath volume at PATH."""
    volume = {"name": VOLUME, "hostPath": {"path": f"/srv/stash-compat/{name}/data"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": busybox_template(name, volume, PATH),
        },
    }


async def _restore(
    kube: Kube, ns: str, runner: PodRunner, rs: JSON, app: str, dirs: dict[str, Path]
) -> JSON:
    """Create the recovered DaemonSet and the RestoreSession, run each pod's `stash-init`
    on that node's directory; the final RestoreSession."""
    await kube.create(DAEMONSETS, daemonset(app), ns)
    await kube.create(RESTORESESSIONS, rs, ns)
    pods = await injected_pods(kube, ns, app, "stash-init", count=2)
    inits = [
        await runner.run(pod, "stash-init", volumes={VOLUME: dirs[pod["spec"]["nodeName"]]})
        for pod in pods
    ]
    codes = await asyncio.gather(*(i.wait(120) for i in inits))
    live = await kube.get(RESTORESESSIONS, rs["metadata"]["name"], ns)
    assert codes == [0, 0], (live.get("status"), [i.logs()[-2000:] for i in inits])
    return await restore_final(kube, ns, rs["metadata"]["name"], inits)


async def test_daemonset_guide_one_host_per_node_and_rules_naming_one_node(
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
    repo = repository("beacon-repo", tmp_path / "backups", "beacon")
    await rawkube.create(REPOSITORIES, repo, ns)
    await rawkube.create(DAEMONSETS, daemonset("beacon"), ns)
    bc = workload_backup(
        "beacon-backup", "DaemonSet", "beacon", "beacon-repo", VOLUME, PATH, restic_bin
    )
    await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
    await ready_invoker(rawkube, ns, "beacon-backup")

    pods = await injected_pods(rawkube, ns, "beacon", "stash", count=2)
    nodes = sorted(p["spec"]["nodeName"] for p in pods)
    assert nodes == ["node-0", "node-1"]
    sidecars = []
    for pod in pods:
        node = pod["spec"]["nodeName"]
        data = tmp_path / "nodes" / node
        write_tree(data, {"data.txt": f"sample_data of {node}\n".encode()})
        sidecars.append(await runner.run(pod, "stash", volumes={VOLUME: data}))
    name = await trigger(rawkube, ns, "beacon-backup")
    session = await finished(rawkube, ns, name, timeout=120, logs=sidecars)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert session["status"]["targets"][0]["totalHosts"] == 2
    assert sorted(host_stats(session)) == nodes
    for sidecar in sidecars:
        await sidecar.stop(grace=5)

    # recovered_daemon.yaml + restoresession.yaml: each node gets its own data back.
    recovered = {node: tmp_path / "recovered" / node for node in nodes}
    for path in recovered.values():
        path.mkdir(parents=True)
    rs = workload_restore(
        "beacon-restore", "DaemonSet", "beacon-recovered", "beacon-repo", VOLUME, PATH, restic_bin
    )
    done = await _restore(rawkube, ns, runner, rs, "beacon-recovered", recovered)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["totalHosts"] == 2 and sorted(restore_stats(done)) == nodes
    for node, path in recovered.items():
        assert read_tree(path) == {"data.txt": f"sample_data of {node}\n".encode()}

    # Rules naming only node-0: node-1 has nothing to restore and is left as it was.
    partial = {node: tmp_path / "partial" / node for node in nodes}
    write_tree(partial["node-1"], {"keep.txt": b"node-1's own data\n"})
    partial["node-0"].mkdir(parents=True)
    rules = [{"targetHosts": ["node-0"], "paths": [PATH]}]
    rs = workload_restore(
        "beacon-partial", "DaemonSet", "beacon-partial", "beacon-repo", VOLUME, PATH, restic_bin
    )
    rs["spec"]["target"]["rules"] = rules
    done = await _restore(rawkube, ns, runner, rs, "beacon-partial", partial)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["totalHosts"] == 2
    stats = restore_stats(done)
    assert sorted(stats) == nodes and {s["phase"] for s in stats.values()} == {"Succeeded"}
    assert read_tree(partial["node-0"]) == {"data.txt": b"sample_data of node-0\n"}
    assert read_tree(partial["node-1"]) == {"keep.txt": b"node-1's own data\n"}
