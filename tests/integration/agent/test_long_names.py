"""A BackupConfiguration whose name is longer than a label value may be (63 characters)
gets its sessions, its sidecar finds and backs them up, and its history is cleaned: the
labels carry a shortened, stable form of the name and every selector is built the same
way (docs/compatibility.md)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS, REPOSITORIES
from stash.controllers.trigger import create_backup_session
from stash.kube.client import Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    backup_configuration,
    create_objects,
    deployment,
    finished,
    host_stats,
    injected_pods,
    local_repository,
    ready_invoker,
    secret,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

LONG = "postgres-production-primary-nightly-full-backup-to-offsite-object-storage"


async def test_a_backup_configuration_named_past_63_characters_backs_up(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    assert len(LONG) > 63
    await run_operator()
    bc = backup_configuration(restic_bin)
    bc["metadata"]["name"] = LONG
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(tmp_path / "repo")),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(rawkube, namespace, LONG)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"db.bin": os.urandom(20_000)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})

    names = []
    for offset in (0, 60):
        invoker = await rawkube.get(BACKUPCONFIGURATIONS, LONG, namespace)
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
        names.append(await create_backup_session(rawkube, invoker, when))
        session = await finished(rawkube, namespace, names[-1], logs=[sidecar])
        assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs())
        assert host_stats(session)["host-0"]["snapshots"]

    async def history_cleaned() -> bool | None:
        left = (await rawkube.list(BACKUPSESSIONS, namespace))["items"]
        return True if [s["metadata"]["name"] for s in left] == names[1:] else None

    await eventually(history_cleaned, timeout=30, what="the older session deleted (limit 1)")
