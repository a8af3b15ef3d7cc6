"""A database dump's snapshot is recorded on the host's heartbeat as a file backup's is
(issue #11): when the Job then fails before `update-status` writes the host's entry
(its container killed), the Failed host names the dump's snapshot, which is in the
repository — no snapshot is left that no session names."""

from __future__ import annotations

import datetime as dt

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.resources import PODS
from stash_dev.podrunner import PodRunner
from stash_dev.podrunner import status as kubelet_status
from tests.e2e.databases.world import World
from tests.support.cluster import eventually
from tests.support.databases import PostgresServer
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster


async def test_a_dump_whose_job_was_killed_before_update_status_is_named_by_the_session(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    postgres: PostgresServer,
) -> None:
    await run_operator(executor_heartbeat_timeout=600)  # the Job's failure says it first
    world = World(rawkube, runner, namespace, restic_bin, rest_server)
    await world.setup(
        {"username": "postgres", "password": postgres.password},
        {
            "type": "kubedb.com/postgres",
            "version": "15.4",
            "clientConfig": {"url": f"postgresql://127.0.0.1:{postgres.port}/"},
        },
    )
    await world.configure_backup({"name": "postgres-backup-15"})
    bc = await rawkube.get(BACKUPCONFIGURATIONS, "db-backup", namespace)
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    name = await create_backup_session(rawkube, {**bc, "kind": "BackupConfiguration"}, when)
    job = f"stash-backup-{name}-0"

    async def scheduled() -> JSON | None:
        pods = (await rawkube.list(PODS, namespace, label_selector=f"job-name={job}"))["items"]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    pod = await eventually(scheduled, timeout=60, what=f"Job {job}'s pod scheduled")
    dump_step = pod["spec"]["initContainers"][0]
    handle = await runner.run(pod, dump_step["name"], report_status=True)
    assert await handle.wait(timeout=300) == 0, handle.logs()[-3000:]
    # update-status is killed before it writes the host's entry.
    update_status = pod["spec"]["containers"][0]
    ended = kubelet_status.terminated_state(137, kubelet_status.now())
    pod = await rawkube.get(PODS, pod["metadata"]["name"], namespace)
    await kubelet_status.report(rawkube, pod, update_status, False, ended, None)

    async def final() -> JSON | None:
        s = await rawkube.get(BACKUPSESSIONS, name, namespace)
        return s if (s.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    session = await eventually(final, timeout=60, what=f"{name} final")
    (host,) = session["status"]["targets"][0]["stats"]
    assert host["phase"] == "Failed", host
    (stored,) = world.snapshots()
    assert f"snapshot {stored['short_id']} (/dumpfile.sql)" in host["error"], (
        host["error"],
        handle.logs()[-3000:],
    )
