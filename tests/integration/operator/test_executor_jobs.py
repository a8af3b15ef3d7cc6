"""Nothing stuck: a backup Job whose pod is refused, cannot be scheduled or fails ends its
session Failed with the reason the apiserver, the scheduler or the Job controller gave;
a Job of the same name that is not the session's is not taken for success; a session
with no timeOut still reaches a final phase. The next session is never Skipped for
overlap with a stuck one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTOREBATCHES,
    RESTORESESSIONS,
)
from stash.contract.sessions import session_name
from stash.controllers.jobs import job_name
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, Resource
from stash.kube.resources import JOBS, PODS, PVCS, SECRETS
from stash_dev.podrunner import status as kubelet_status
from tests.integration.operator.conftest import (
    OperatorFactory,
    backup_configuration,
    create_world,
    repository,
    secret,
)
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

QUOTAS = Resource("", "v1", "resourcequotas", "ResourceQuota")
FINAL = ("Succeeded", "Failed", "Skipped")


def pvc_backup(**spec: Any) -> JSON:
    """A job-model BackupConfiguration `bc` of the PVC `data` (no timeOut)."""
    body = backup_configuration(
        target={"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}},
        **spec,
    )
    return body


async def job_world(kube: Kube, ns: str, **spec: Any) -> None:
    await kube.create(SECRETS, secret(), ns)
    await kube.create(REPOSITORIES, repository(), ns)
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await kube.create(PVCS, claim, ns)
    await kube.create(BACKUPCONFIGURATIONS, pvc_backup(**spec), ns)

    async def ready() -> JSON | None:
        obj = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    await eventually(ready, timeout=60, what="BackupConfiguration Ready")


async def trigger(kube: Kube, ns: str, at: int) -> str:
    bc = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
    return await create_backup_session(kube, bc, dt.datetime.fromtimestamp(at, dt.UTC))


async def phase(kube: Kube, ns: str, name: str, want: tuple[str, ...], timeout: float) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPSESSIONS, name, ns)
        return obj if (obj.get("status") or {}).get("phase") in want else None

    return await eventually(probe, timeout=timeout, what=f"{name} in {want}")


def host_error(session: JSON) -> str:
    (target,) = session["status"]["targets"]
    (host,) = target["stats"]
    assert host["phase"] == "Failed", host
    return str(host["error"])


async def forbid_pods(kube: Kube, ns: str) -> None:
    """A ResourceQuota of zero pods, enforced by the apiserver's quota admission."""
    quota = await kube.create(
        QUOTAS, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}, ns
    )
    # This control plane runs no quota controller: record usage as it would.
    quota["status"] = {"hard": {"pods": "0"}, "used": {"pods": "0"}}
    await kube.replace(QUOTAS, quota, ns, subresource="status")


async def test_a_job_whose_pod_is_refused_fails_its_host_and_the_next_session_runs(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator(executor_start_timeout=2)
    await forbid_pods(rawkube, namespace)
    await job_world(rawkube, namespace)
    name = await trigger(rawkube, namespace, 1_700_000_000)
    session = await phase(rawkube, namespace, name, FINAL, timeout=60)
    assert session["status"]["phase"] == "Failed"
    error = host_error(session)
    assert "cannot be created" in error and "exceeded quota: no-pods" in error, error

    await rawkube.delete(QUOTAS, "no-pods", namespace)
    after = await trigger(rawkube, namespace, 1_700_000_300)
    running = await phase(rawkube, namespace, after, ("Running", *FINAL), timeout=30)
    assert running["status"]["phase"] == "Running", running["status"]


async def test_a_job_whose_pod_cannot_be_scheduled_fails_with_the_schedulers_reason(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator(executor_start_timeout=2)
    no_node = {"pod": {"nodeSelector": {"stash.dev/no-such-node": "true"}}}
    await job_world(rawkube, namespace, runtimeSettings=no_node)
    name = await trigger(rawkube, namespace, 1_700_000_000)
    session = await phase(rawkube, namespace, name, FINAL, timeout=60)
    error = host_error(session)
    assert "cannot be scheduled" in error and "node(s) didn't match" in error, error


async def test_a_failed_job_fails_its_host_at_once_with_the_containers_exit(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()  # the default start timeout: a failure is not a wait
    await job_world(rawkube, namespace)
    name = await trigger(rawkube, namespace, 1_700_000_000)
    job = job_name("stash-backup", name, 0)

    async def scheduled() -> JSON | None:
        pods = await rawkube.list(PODS, namespace, label_selector=f"job-name={job}")
        items = [p for p in pods["items"] if p["spec"].get("nodeName")]
        return items[0] if items else None

    pod = await eventually(scheduled, timeout=30, what=f"a scheduled pod of Job {job}")
    first = pod["spec"]["initContainers"][0]
    # What a kubelet reports when the agent's first step exits 3 before any heartbeat.
    ended = kubelet_status.terminated_state(3, kubelet_status.now())
    await kubelet_status.report(rawkube, pod, first, True, ended, None)

    session = await phase(rawkube, namespace, name, FINAL, timeout=60)
    error = host_error(session)
    assert f"Job {job} failed" in error and "BackoffLimitExceeded" in error, error
    assert f"container {first['name']}: Error (exit 3)" in error, error


async def test_a_job_of_the_same_name_that_is_not_ours_is_a_condition_not_a_success(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await job_world(rawkube, namespace)
    at = 1_700_000_000
    squatter = job_name(
        "stash-backup", session_name("bc", dt.datetime.fromtimestamp(at, dt.UTC)), 0
    )
    await rawkube.create(
        JOBS,
        {
            "metadata": {"name": squatter},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "other", "image": "busybox"}],
                    }
                }
            },
        },
        namespace,
    )
    name = await trigger(rawkube, namespace, at)
    session = await phase(rawkube, namespace, name, FINAL, timeout=30)
    assert session["status"]["phase"] == "Failed"
    (target,) = session["status"]["targets"]
    (ensured,) = [c for c in target["conditions"] if c["type"] == "BackupExecutorEnsured"]
    assert ensured["status"] == "False"
    assert f"{namespace}/{squatter} already exists and belongs to nothing" in ensured["message"]


async def test_a_session_without_timeout_ends_at_the_default_deadline(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator(default_session_timeout=3)
    await create_world(rawkube, namespace)  # a Deployment whose sidecar never runs

    async def ready() -> JSON | None:
        obj = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    await eventually(ready, timeout=60, what="BackupConfiguration Ready")
    name = await trigger(rawkube, namespace, int(dt.datetime.now(dt.UTC).timestamp()))
    session = await phase(rawkube, namespace, name, FINAL, timeout=60)
    assert session["status"]["phase"] == "Failed"
    (deadline,) = [c for c in session["status"]["conditions"] if c["type"] == "DeadlineExceeded"]
    assert "default_session_timeout" in deadline["message"]


async def test_a_restore_job_whose_pod_is_refused_fails_the_restore_with_the_reason(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator(executor_start_timeout=2)
    await forbid_pods(rawkube, namespace)
    await job_world(rawkube, namespace)
    restore = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "restore"},
        "spec": {
            "repository": {"name": "repo"},
            "target": {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "rules": [{"paths": ["/stash-data"]}],
            },
        },
    }
    await rawkube.create(RESTORESESSIONS, restore, namespace)

    async def final() -> JSON | None:
        obj = await rawkube.get(RESTORESESSIONS, "restore", namespace)
        return obj if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    done = await eventually(final, timeout=60, what="RestoreSession final")
    assert done["status"]["phase"] == "Failed"
    (host,) = done["status"]["stats"]
    assert host["phase"] == "Failed" and "exceeded quota: no-pods" in host["error"], host


async def test_a_restore_batch_member_whose_job_is_refused_fails_with_the_reason(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    # No timeOut: without Job watching the batch would stay Running until the default
    # session deadline (24 h).
    await run_operator(executor_start_timeout=2)
    await forbid_pods(rawkube, namespace)
    await job_world(rawkube, namespace)
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
    batch = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreBatch",
        "metadata": {"name": "rb"},
        "spec": {
            "repository": {"name": "repo"},
            "members": [{"target": {"ref": pvc, "rules": [{"paths": ["/stash-data"]}]}}],
        },
    }
    await rawkube.create(RESTOREBATCHES, batch, namespace)

    async def final() -> JSON | None:
        obj = await rawkube.get(RESTOREBATCHES, "rb", namespace)
        return obj if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    done = await eventually(final, timeout=60, what="RestoreBatch final")
    assert done["status"]["phase"] == "Failed"
    (member,) = done["status"]["members"]
    assert member["phase"] == "Failed", member
    (host,) = member["stats"]
    assert host["hostname"] == "data", host
    assert host["phase"] == "Failed" and "exceeded quota: no-pods" in host["error"], host
