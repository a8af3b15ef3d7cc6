"""restic killed after it wrote its snapshot but before it printed the snapshot's ID
(issue #11, found by the chaos suite): the snapshot is tagged with its session, so the
Failed host names it and no snapshot is left that no session names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    backup_configuration,
    create_objects,
    deployment,
    finished,
    host_restic,
    host_stats,
    injected_pods,
    local_repository,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory

pytestmark = pytest.mark.cluster

#: A `restic` that runs the real one, but dies (SIGKILL) once a backup wrote its
#: snapshot, before anything reaches the agent: the moment the chaos suite hit.
DIES_LATE = """#!/bin/sh
case " $* " in
  *" backup "*) "{real}" "$@" >/dev/null 2>&1; kill -9 $$ ;;
esac
exec "{real}" "$@"
"""


async def test_a_restic_killed_before_it_named_its_snapshot_is_named_by_the_session(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    wrapper = tmp_path / "bin" / "restic"
    wrapper.parent.mkdir()
    wrapper.write_text(DIES_LATE.format(real=restic_bin))
    wrapper.chmod(0o755)
    repo_dir = tmp_path / "repo"
    bc = backup_configuration(restic_bin)
    for var in bc["spec"]["runtimeSettings"]["container"]["env"]:
        if var["name"] == "PATH":
            var["value"] = f"{wrapper.parent}:{var['value']}"
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
    write_tree(data, {"a.bin": os.urandom(64 * 1024)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    name = await trigger(rawkube, namespace)

    session = await finished(rawkube, namespace, name, timeout=120, logs=[sidecar])
    host = host_stats(session)["host-0"]
    assert host["phase"] == "Failed", host
    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    (snapshot,) = await restic.snapshots()
    assert f"stash.appscode.com/backup-session={name}" in snapshot.tags, snapshot.tags
    assert f"snapshot {snapshot.short_id[:8]}" in host["error"], host["error"]
