"""Metrics of a VolumeSnapshotter session (issue #17) on a real Pushgateway and
Prometheus: the session, target and host families as for a restic session, with
`driver="VolumeSnapshotter"`, one host per claim, pushed by the operator (no agent)."""

from __future__ import annotations

import datetime as dt

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.resources import PVCS
from tests.integration.metrics.world import condition, names_of
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually
from tests.support.csi import SNAPSHOT_CLASS, CsiStack, claim, volume_handle
from tests.support.prometheus import Monitoring

# serial: the CSI snapshot stack (one per process) is test_volumesnapshots.py's in phase 1
pytestmark = [pytest.mark.cluster, pytest.mark.serial]


async def test_snapshot_session_metrics_reach_prometheus(
    csi_stack: CsiStack,
    rawkube: Kube,
    namespace: str,
    run_operator: OperatorFactory,
    monitoring: Monitoring,
) -> None:
    ns = namespace
    await rawkube.create(PVCS, claim("data"), ns)
    await volume_handle(rawkube, ns, "data")
    bc: JSON = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "bc"},
        "spec": {
            "driver": "VolumeSnapshotter",
            "schedule": "0 0 1 1 *",
            "target": {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "snapshotClassName": SNAPSHOT_CLASS,
            },
            "retentionPolicy": {"name": "keep-all"},
        },
    }
    await rawkube.create(BACKUPCONFIGURATIONS, bc, ns)
    await run_operator(pushgateway_url=monitoring.pushgateway_url)

    async def ready() -> JSON | None:
        obj = await rawkube.get(BACKUPCONFIGURATIONS, "bc", ns)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    invoker = await eventually(ready, timeout=30, what="BackupConfiguration Ready")
    name = await create_backup_session(
        rawkube, invoker, dt.datetime.fromtimestamp(1_767_225_600, dt.UTC)
    )

    async def final() -> JSON | None:
        obj = await rawkube.get(BACKUPSESSIONS, name, ns)
        return obj if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    session = await eventually(final, timeout=60, what=f"BackupSession {name} final")
    assert session["status"]["phase"] == "Succeeded", session["status"]
    pushed = condition(session, "MetricsPushed")
    assert (pushed["status"], pushed["reason"]) == ("True", "SuccessfullyPushedMetrics")

    want = set(names_of("session", "target", "host"))

    async def series() -> dict[str, JSON] | None:
        found = {
            r["metric"]["__name__"]: r["metric"]
            for r in await monitoring.query(f'{{namespace="{ns}",job!="stash-operator"}}')
        }
        return found if want <= set(found) else None

    got = await eventually(series, timeout=30, interval=0.5, what="snapshot series in Prometheus")
    assert {s["driver"] for s in got.values()} == {"VolumeSnapshotter"}
    assert "repository" not in got["stash_backup_session_success"]
    (success,) = await monitoring.query(
        f'stash_appscode_com_backupsession_host_backup_success{{namespace="{ns}"}}'
    )
    assert (success["metric"]["hostname"], success["value"][1]) == ("data", "1")
