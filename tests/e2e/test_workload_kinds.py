"""Every workload kind end to end (issue #13 item 4), beyond what the guides' suite
(tests/e2e/compat) and the agent tests cover: real control plane, restic and storage,
the injected containers run by the pod runner.

* ReplicaSet and ReplicationController: backup by the sidecar and restore by the
  init-container. Neither kind rolls out a template change, so their pods are recreated
  by the operator after each injection (`controllers.rollout`).
* StatefulSet with pod volumes and the alias form: hosts `<alias>-<ordinal>`; restore
  rules naming only some of them leave the others untouched (§1.1, as upstream).
* DeploymentConfig on a cluster without OpenShift's API: the invoker is not Ready and
  says why.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import REPLICASETS, REPLICATIONCONTROLLERS, SECRETS, STATEFULSETS
from stash_dev.podrunner import PodRunner
from tests.e2e.compat.guides import restore_final, restore_stats, runtime
from tests.integration.agent.conftest import (
    backup_configuration,
    condition,
    finished,
    host_stats,
    injected_pods,
    local_repository,
    pod_template,
    read_tree,
    ready_invoker,
    secret,
    statefulset,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

API_VERSIONS = {"ReplicaSet": "apps/v1", "ReplicationController": "v1"}


def replicated(kind: str) -> JSON:
    """A one-replica ReplicaSet or ReplicationController `web` (an emptyDir at /data)."""
    labels = {"app": "web"}
    selector = labels if kind == "ReplicationController" else {"matchLabels": labels}
    return {
        "apiVersion": API_VERSIONS[kind],
        "kind": kind,
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": selector, "template": pod_template("web")},
    }


def restore_session(kind: str, target: str, restic_bin: str, **target_fields: object) -> JSON:
    """RestoreSession `restore` of `/data` into the target (extra target fields given)."""
    ref = {"apiVersion": API_VERSIONS.get(kind, "apps/v1"), "kind": kind, "name": target}
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "restore"},
        "spec": {
            "repository": {"name": "repo"},
            "target": {
                "ref": ref,
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "rules": [{"paths": ["/data"]}],
                **target_fields,
            },
            "runtimeSettings": runtime(restic_bin),
        },
    }


@pytest.mark.parametrize("kind", ["ReplicaSet", "ReplicationController"])
async def test_a_replicated_workload_backs_up_and_restores(
    kind: str,
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
    bc = backup_configuration(restic_bin, kind=kind)
    bc["spec"]["target"]["ref"]["apiVersion"] = API_VERSIONS[kind]
    res = REPLICASETS if kind == "ReplicaSet" else REPLICATIONCONTROLLERS
    await rawkube.create(SECRETS, secret(), ns)
    await rawkube.create(REPOSITORIES, local_repository(tmp_path / "repo"), ns)
    await rawkube.create(res, replicated(kind), ns)
    await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
    await ready_invoker(rawkube, ns)

    # The pod that was running before the injection is replaced by one with the sidecar.
    (pod,) = await injected_pods(rawkube, ns, "web", "stash")
    data = tmp_path / "data"
    original = {"table.db": os.urandom(30_000), "conf/app.ini": b"[app]\n"}
    write_tree(data, original)
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    session = await finished(rawkube, ns, await trigger(rawkube, ns), logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert list(host_stats(session)) == ["host-0"]
    await sidecar.stop(grace=5)

    await rawkube.create(RESTORESESSIONS, restore_session(kind, "web", restic_bin), ns)
    (pod,) = await injected_pods(rawkube, ns, "web", "stash-init")
    empty = tmp_path / "restored"
    empty.mkdir()
    init = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await init.wait(120) == 0, init.logs()
    done = await restore_final(rawkube, ns, "restore", [init])
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert read_tree(empty) == original


async def test_statefulset_alias_hosts_and_rules_naming_some_of_them(
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
    bc = backup_configuration(restic_bin, kind="StatefulSet", target="db")
    bc["spec"]["target"]["alias"] = "db"
    await rawkube.create(SECRETS, secret(), ns)
    await rawkube.create(REPOSITORIES, local_repository(tmp_path / "repo"), ns)
    await rawkube.create(STATEFULSETS, statefulset("db", replicas=3), ns)
    await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
    await ready_invoker(rawkube, ns)
    pods = await injected_pods(rawkube, ns, "db", "stash", count=3)
    sidecars = []
    for i, pod in enumerate(pods):
        data = tmp_path / "data" / str(i)
        write_tree(data, {"rows.db": b"replica %d\n" % i})
        sidecars.append(await runner.run(pod, "stash", volumes={"data": data}))
    session = await finished(rawkube, ns, await trigger(rawkube, ns), timeout=180, logs=sidecars)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert sorted(host_stats(session)) == ["db-0", "db-1", "db-2"]
    for sidecar in sidecars:
        await sidecar.stop(grace=5)

    # Rules name db-0 and db-2 only: db-1 has nothing to restore and keeps its data.
    rs = restore_session(
        "StatefulSet",
        "db",
        restic_bin,
        alias="db",
        rules=[{"targetHosts": ["db-0", "db-2"], "paths": ["/data"]}],
    )
    await rawkube.create(RESTORESESSIONS, rs, ns)
    pods = await injected_pods(rawkube, ns, "db", "stash-init", count=3)
    dirs = [tmp_path / "new" / str(i) for i in range(3)]
    for d in dirs:
        d.mkdir(parents=True)
    write_tree(dirs[1], {"rows.db": b"replica 1, newer than its backup\n"})
    inits = [
        await runner.run(pod, "stash-init", volumes={"data": d})
        for pod, d in zip(pods, dirs, strict=True)
    ]
    codes = await asyncio.gather(*(i.wait(120) for i in inits))
    assert codes == [0, 0, 0], [i.logs()[-2000:] for i in inits]
    done = await restore_final(rawkube, ns, "restore", inits)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["totalHosts"] == 3
    stats = restore_stats(done)
    assert sorted(stats) == ["db-0", "db-1", "db-2"]
    assert {s["phase"] for s in stats.values()} == {"Succeeded"}
    assert [read_tree(d) for d in dirs] == [
        {"rows.db": b"replica 0\n"},
        {"rows.db": b"replica 1, newer than its backup\n"},
        {"rows.db": b"replica 2\n"},
    ]


async def test_a_deploymentconfig_without_its_api_is_refused_with_the_reason(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    ns = namespace
    bc = backup_configuration(restic_bin, kind="DeploymentConfig", target="legacy")
    bc["spec"]["target"]["ref"]["apiVersion"] = "apps.openshift.io/v1"
    await rawkube.create(SECRETS, secret(), ns)
    await rawkube.create(REPOSITORIES, local_repository(tmp_path / "repo"), ns)
    await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
    rs = restore_session("DeploymentConfig", "legacy", restic_bin)
    rs["spec"]["target"]["ref"]["apiVersion"] = "apps.openshift.io/v1"
    await rawkube.create(RESTORESESSIONS, rs, ns)

    async def refused(res: object, name: str, type_: str) -> JSON | None:
        obj = await rawkube.get(res, name, ns)  # type: ignore[arg-type]
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        return obj if conds.get(type_, {}).get("status") == "False" else None

    bc_live = await eventually(
        lambda: refused(BACKUPCONFIGURATIONS, "bc", "BackupTargetFound"), timeout=30, what="bc"
    )
    assert bc_live["status"]["phase"] != "Ready"
    message = condition(bc_live, "BackupTargetFound")["message"]
    assert "does not serve deploymentconfigs.apps.openshift.io/v1" in message, message
    rs_live = await eventually(
        lambda: refused(RESTORESESSIONS, "restore", "RestoreTargetFound"), timeout=30, what="rs"
    )
    assert rs_live["status"]["phase"] not in ("Running", "Succeeded")
    assert "does not serve" in condition(rs_live, "RestoreTargetFound")["message"]
