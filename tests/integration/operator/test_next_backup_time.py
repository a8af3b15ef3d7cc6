"""`status.nextBackupTime` of BackupConfigurations and BackupBatches: the cron engine's next
fire time, moved on after each tick, gone while paused, shown by `kubectl get`."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess

import pytest

from stash.contract.resources import BACKUPBATCHES, BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.kube.client import JSON, Kube, Resource
from stash.operator import Operator
from stash_dev import ControlPlane
from tests.integration.operator.conftest import OperatorFactory, create_world
from tests.support.chart_tools import kubectl_binary
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def _wire(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


async def _in_step(kube: Kube, op: Operator, res: Resource, name: str, ns: str) -> JSON:
    """Wait until the object's nextBackupTime is the engine's next fire time for it."""
    key = f"{res.kind}/{ns}/{name}"

    async def probe() -> JSON | None:
        obj = await kube.get(res, name, ns)
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        return obj if status.get("nextBackupTime") == _wire(op.engine.next_fire_time(key)) else None

    return await eventually(probe, timeout=30, what=f"{key} nextBackupTime = the engine's")


async def test_next_backup_time_follows_the_engine_through_a_tick_and_a_pause(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, control_plane: ControlPlane
) -> None:
    op = await run_operator()
    await create_world(rawkube, namespace, schedule="*/1 * * * *")
    obj = await _in_step(rawkube, op, BACKUPCONFIGURATIONS, "bc", namespace)
    first = obj["status"]["nextBackupTime"]
    assert first is not None

    argv = [kubectl_binary(), f"--kubeconfig={control_plane.kubeconfig}", "get", "bc"]
    done = await asyncio.to_thread(
        subprocess.run, [*argv, "-n", namespace], capture_output=True, text=True, timeout=60
    )
    shown = done.stdout
    assert "NEXT-BACKUP" in shown.splitlines()[0] and first in shown

    # After the tick (a session named after it), the field shows the engine's next one.
    async def ticked() -> JSON | None:
        items = (await rawkube.list(BACKUPSESSIONS, namespace))["items"]
        return items[0] if items else None

    await eventually(ticked, timeout=75, what="the scheduled BackupSession")
    obj = await _in_step(rawkube, op, BACKUPCONFIGURATIONS, "bc", namespace)
    assert obj["status"]["nextBackupTime"] not in (None, first)

    await rawkube.patch(BACKUPCONFIGURATIONS, "bc", {"spec": {"paused": True}}, namespace)
    obj = await _in_step(rawkube, op, BACKUPCONFIGURATIONS, "bc", namespace)
    assert "nextBackupTime" not in obj["status"]
    await rawkube.patch(BACKUPCONFIGURATIONS, "bc", {"spec": {"paused": False}}, namespace)
    obj = await _in_step(rawkube, op, BACKUPCONFIGURATIONS, "bc", namespace)
    assert obj["status"].get("nextBackupTime")


async def test_a_backup_batch_shows_its_next_backup_time(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    op = await run_operator()
    bc = await create_world(rawkube, namespace)
    batch = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"name": "wp"},
        "spec": {
            "schedule": "CRON_TZ=Asia/Tokyo 30 4 * * *",
            "repository": {"name": "repo"},
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5},
            "members": [{"target": bc["spec"]["target"]}],
        },
    }
    await rawkube.create(BACKUPBATCHES, batch, namespace)
    obj = await _in_step(rawkube, op, BACKUPBATCHES, "wp", namespace)
    shown = dt.datetime.fromisoformat(obj["status"]["nextBackupTime"].replace("Z", "+00:00"))
    assert shown.astimezone(dt.timezone(dt.timedelta(hours=9))).strftime("%H:%M") == "04:30"
    await rawkube.patch(BACKUPBATCHES, "wp", {"spec": {"paused": True}}, namespace)
    obj = await _in_step(rawkube, op, BACKUPBATCHES, "wp", namespace)
    assert "nextBackupTime" not in obj["status"]
