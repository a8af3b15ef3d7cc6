"""A backup Job that fails after its backup step recorded snapshots on the host's
heartbeat fails the host naming them (issue #11, found by the chaos suite: a killed
`update-status` container left snapshots no session named)."""

from __future__ import annotations

import pytest

from stash.agent.leases import Heartbeat
from stash.contract.resources import BACKUPSESSIONS
from stash.controllers.jobs import job_name
from stash.controllers.liveness import job_host
from stash.kube.client import JSON, Kube
from stash.kube.resources import JOBS, PODS
from stash_dev.podrunner import status as kubelet_status
from tests.integration.operator.conftest import OperatorFactory
from tests.integration.operator.test_executor_jobs import (
    FINAL,
    host_error,
    job_world,
    phase,
    trigger,
)
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


async def test_a_job_killed_after_its_backup_step_names_the_snapshots_it_wrote(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator(executor_heartbeat_timeout=600)  # the Job's failure says it first
    await job_world(rawkube, namespace)
    name = await trigger(rawkube, namespace, 1_700_000_000)
    job = job_name("stash-backup", name, 0)

    async def scheduled() -> JSON | None:
        pods = await rawkube.list(PODS, namespace, label_selector=f"job-name={job}")
        items = [p for p in pods["items"] if p["spec"].get("nodeName")]
        return items[0] if items else None

    pod = await eventually(scheduled, timeout=30, what=f"a scheduled pod of Job {job}")
    host = job_host(await rawkube.get(JOBS, job, namespace))
    # What the backup step does: its snapshot recorded on the heartbeat, which it
    # leaves for update-status.
    session = await rawkube.get(BACKUPSESSIONS, name, namespace)
    heartbeat = Heartbeat(rawkube, session, host, pod["metadata"]["name"])
    await heartbeat.start()
    await heartbeat.record_snapshot({"name": "0badcafe", "path": "/data", "id": "0badcafe" * 8})
    await heartbeat.stop(delete=False)
    backup_step = pod["spec"]["initContainers"][0]
    update_status = pod["spec"]["containers"][0]
    started = kubelet_status.now()
    await kubelet_status.report(
        rawkube, pod, backup_step, True, kubelet_status.terminated_state(0, started), None
    )
    # ... then update-status is killed before it writes the host's entry.
    await kubelet_status.report(
        rawkube, pod, update_status, False, kubelet_status.terminated_state(137, started), None
    )

    done = await phase(rawkube, namespace, name, FINAL, timeout=60)
    error = host_error(done)
    assert f"Job {job} failed" in error, error
    assert "snapshot 0badcafe (/data)" in error, error
