"""BackupSessions reach a final phase with honest reasons: success once hosts report,
DeadlineExceeded, Skipped (paused, overlapping), history cleanup, retries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.status import update_status
from tests.integration.operator.conftest import OperatorFactory, create_world
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


async def _ready(kube: Kube, ns: str) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    return await eventually(probe, timeout=30, what="BackupConfiguration Ready")


async def _session_phase(kube: Kube, ns: str, name: str, want: str, timeout: float = 30) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPSESSIONS, name, ns)
        return obj if (obj.get("status") or {}).get("phase") == want else None

    return await eventually(probe, timeout=timeout, what=f"BackupSession {name} {want}")


def _cond(obj: JSON, kind: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    raise AssertionError(f"no condition {kind} in {obj.get('status')}")


async def _trigger(kube: Kube, ns: str, at: int) -> str:
    bc = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    return await create_backup_session(kube, bc, when)


async def _report_host(kube: Kube, ns: str, name: str, phase: str = "Succeeded") -> None:
    """What an agent does when it finished its host: upsert its stats entry."""

    async def initiated() -> JSON | None:
        obj = await kube.get(BACKUPSESSIONS, name, ns)
        return obj if (obj.get("status") or {}).get("targets") else None

    await eventually(initiated, timeout=20, what=f"{name} targets initiated")

    def add(live: JSON) -> JSON:
        status = dict(live["status"])
        target = dict(status["targets"][0])
        target["stats"] = [{"hostname": "host-0", "phase": phase, "duration": "1s"}]
        status["targets"] = [target]
        return status

    await update_status(kube, BACKUPSESSIONS, name, ns, add)


async def test_hand_made_session_gets_labels_and_succeeds_when_host_reports(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace)
    await _ready(rawkube, namespace)
    bare = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": "manual"},
        "spec": {
            "invoker": {
                "apiGroup": "stash.appscode.com",
                "kind": "BackupConfiguration",
                "name": "bc",
            }
        },
    }
    await rawkube.create(BACKUPSESSIONS, bare, namespace)
    await _report_host(rawkube, namespace, "manual")
    done = await _session_phase(rawkube, namespace, "manual", "Succeeded")
    labels = done["metadata"]["labels"]
    assert labels["stash.appscode.com/invoker-name"] == "bc"
    assert labels["stash.appscode.com/invoker-type"] == "BackupConfiguration"
    assert labels["stash.appscode.com/target-kind"] == "Deployment"
    assert labels["stash.appscode.com/target-name"] == "web"
    target = done["status"]["targets"][0]
    assert target["totalHosts"] == 1 and target["phase"] == "Succeeded"
    assert target["preBackupActions"] == ["InitializeBackendRepository"]
    # restic check is not due on a Repository without a recorded backup
    assert target["postBackupActions"] == ["ApplyRetentionPolicy", "SendRepositoryMetrics"]
    assert _cond(done, "MetricsPushed")["status"] == "True"
    assert done["status"]["sessionDuration"].endswith("s")


async def test_deadline_fails_session_and_retry_creates_one_more(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace, timeOut="2s", retryConfig={"maxRetry": 1, "delay": "1s"})
    await _ready(rawkube, namespace)
    first = await _trigger(rawkube, namespace, 1_700_000_000)
    failed = await _session_phase(rawkube, namespace, first, "Failed")
    cond = _cond(failed, "DeadlineExceeded")
    assert (cond["status"], cond["reason"]) == ("True", "FailedToCompleteWithinDeadline")
    assert failed["spec"]["retryLeft"] == 1

    async def retried() -> list[JSON] | None:
        items = (await rawkube.list(BACKUPSESSIONS, namespace))["items"]
        others = [s for s in items if s["metadata"]["name"] != first]
        return others or None

    others = await eventually(retried, timeout=20, what="the retry session")
    assert len(others) == 1 and others[0]["spec"]["retryLeft"] == 0

    async def marked() -> JSON | None:
        original = await rawkube.get(BACKUPSESSIONS, first, namespace)
        return original if original["status"].get("retried") else None

    # The retry session is created first, then the original is marked retried.
    original = await eventually(marked, timeout=20, what="the first session marked retried")
    assert original["status"]["retried"] is True and original["status"]["nextRetry"]
    # The retry fails too (nobody backs up) and, with no retries left, stops there.
    await _session_phase(rawkube, namespace, others[0]["metadata"]["name"], "Failed")


async def test_paused_invoker_skips_session_with_reason(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace)
    await _ready(rawkube, namespace)
    await rawkube.patch(BACKUPCONFIGURATIONS, "bc", {"spec": {"paused": True}}, namespace)
    name = await _trigger(rawkube, namespace, 1_700_000_100)
    skipped = await _session_phase(rawkube, namespace, name, "Skipped")
    cond = _cond(skipped, "BackupSkipped")
    assert cond["reason"] == "SkippedTakingNewBackup" and "paused" in cond["message"]


async def test_overlapping_session_is_skipped_and_history_is_cleaned(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace, backupHistoryLimit=1)
    await _ready(rawkube, namespace)
    running = await _trigger(rawkube, namespace, 1_700_000_200)
    await _session_phase(rawkube, namespace, running, "Running")
    second = await _trigger(rawkube, namespace, 1_700_000_201)
    skipped = await _session_phase(rawkube, namespace, second, "Skipped")
    assert (
        f'Previous BackupSession: {running} is "Running"'
        in _cond(skipped, "BackupSkipped")["message"]
    )
    await _report_host(rawkube, namespace, running)
    await _session_phase(rawkube, namespace, running, "Succeeded")
    third = await _trigger(rawkube, namespace, 1_700_000_300)
    await _report_host(rawkube, namespace, third)
    await _session_phase(rawkube, namespace, third, "Succeeded")

    async def cleaned() -> list[str] | None:
        items = (await rawkube.list(BACKUPSESSIONS, namespace))["items"]
        names = sorted(
            s["metadata"]["name"] for s in items if not s["metadata"].get("deletionTimestamp")
        )
        return names if names == [third] else None

    await eventually(cleaned, timeout=20, what="history trimmed to the newest session")


async def test_host_whose_executor_stops_its_heartbeat_fails_the_session(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    from stash.kube.leader import LEASES

    await run_operator(executor_heartbeat_timeout=2)
    await create_world(rawkube, namespace)
    await _ready(rawkube, namespace)
    name = await _trigger(rawkube, namespace, 1_700_000_400)
    await _session_phase(rawkube, namespace, name, "Running")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # What the agent keeps renewing while it backs up host-0, then a SIGKILL stops it.
    await rawkube.create(
        LEASES,
        {
            "metadata": {
                "name": f"stash-hb-{name}-host-0",
                "labels": {
                    "stash.appscode.com/backup-session": name,
                    "stash.appscode.com/hostname": "host-0",
                },
            },
            "spec": {"holderIdentity": "web-abc-123", "renewTime": now, "acquireTime": now},
        },
        namespace,
    )
    failed = await _session_phase(rawkube, namespace, name, "Failed", timeout=30)
    (host,) = failed["status"]["targets"][0]["stats"]
    assert host["hostname"] == "host-0" and host["phase"] == "Failed"
    assert "web-abc-123 stopped renewing its heartbeat" in host["error"]


async def test_deleted_repository_makes_invoker_not_ready_and_sessions_skipped(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    """Scenario S4 step 4."""
    from stash.contract.resources import REPOSITORIES

    await run_operator()
    await create_world(rawkube, namespace)
    await _ready(rawkube, namespace)
    await rawkube.delete(REPOSITORIES, "repo", namespace)

    async def not_ready() -> JSON | None:
        bc = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
        return bc if (bc.get("status") or {}).get("phase") == "NotReady" else None

    bc = await eventually(not_ready, timeout=30, what="BackupConfiguration NotReady")
    cond = _cond(bc, "RepositoryFound")
    assert (cond["status"], cond["reason"]) == ("False", "RepositoryNotAvailable")
    name = await _trigger(rawkube, namespace, 1_700_000_500)
    skipped = await _session_phase(rawkube, namespace, name, "Skipped")
    message = _cond(skipped, "BackupSkipped")["message"]
    assert "is not ready" in message and "RepositoryFound" in message
