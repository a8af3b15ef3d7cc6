"""Driver VolumeSnapshotter against the real CSI snapshot stack (issue #17): the CRDs,
snapshot-controller, csi-snapshotter and csi-provisioner, with the test driver
(tests/support/csi.py). Data is written into a volume's directory and read back from
the restored volume's directory (nothing is mounted: there is no kubelet)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS, RESTORESESSIONS
from stash.contract.volumesnapshots import VOLUMESNAPSHOTS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, JOBS, PVCS, STATEFULSETS
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually
from tests.support.csi import (
    SNAPSHOT_CLASS,
    SNAPSHOTCLASSES,
    STORAGE_CLASS,
    CsiStack,
    claim,
    volume_handle,
)

pytestmark = pytest.mark.cluster


def _bc(target: JSON, class_name: str | None = SNAPSHOT_CLASS, **spec: Any) -> JSON:
    t = {"ref": target, **({"snapshotClassName": class_name} if class_name else {})}
    body: JSON = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "bc"},
        "spec": {
            "driver": "VolumeSnapshotter",
            "schedule": "0 0 1 1 *",
            "target": t,
            "retentionPolicy": {"name": "keep-all"},  # keeps nothing by rule: deletes nothing
        },
    }
    body["spec"].update(spec)
    return body


async def _invoker_phase(kube: Kube, ns: str, want: str) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
        return obj if (obj.get("status") or {}).get("phase") == want else None

    return await eventually(probe, timeout=30, what=f"BackupConfiguration {want}")


async def _backup(kube: Kube, ns: str, at: int, timeout: float = 60) -> JSON:
    """Trigger a session for fire time `at` and wait for its final phase."""
    bc = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
    name = await create_backup_session(kube, bc, dt.datetime.fromtimestamp(at, dt.UTC))

    async def final() -> JSON | None:
        obj = await kube.get(BACKUPSESSIONS, name, ns)
        phase = (obj.get("status") or {}).get("phase")
        return obj if phase in ("Succeeded", "Failed", "Skipped") else None

    return await eventually(final, timeout=timeout, what=f"BackupSession {name} final")


def _restore_session(target: JSON) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "rs"},
        "spec": {"driver": "VolumeSnapshotter", "target": target},
    }


async def _restored(kube: Kube, ns: str) -> JSON:
    async def final() -> JSON | None:
        obj = await kube.get(RESTORESESSIONS, "rs", ns)
        phase = (obj.get("status") or {}).get("phase")
        return obj if phase in ("Succeeded", "Failed") else None

    return await eventually(final, timeout=60, what="RestoreSession final")


def _hosts(session: JSON) -> dict[str, JSON]:
    return {
        h["hostname"]: h
        for t in session["status"].get("targets") or []
        for h in t.get("stats") or []
    }


async def test_pvc_backup_then_restore_gives_the_same_bytes(
    csi_stack: CsiStack, rawkube: Kube, namespace: str, run_operator: OperatorFactory
) -> None:
    ns = namespace
    await rawkube.create(PVCS, claim("data"), ns)
    handle = await volume_handle(rawkube, ns, "data")
    payload = b"stash volume snapshot \x00\x01\x02" * 1000
    (csi_stack.volume_dir(handle) / "db.bin").write_bytes(payload)
    target = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
    await rawkube.create(BACKUPCONFIGURATIONS, _bc(target), ns)
    await run_operator()
    await _invoker_phase(rawkube, ns, "Ready")

    session = await _backup(rawkube, ns, 1_767_225_600)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    host = _hosts(session)["data"]
    assert host["phase"] == "Succeeded"
    snap = await rawkube.get(VOLUMESNAPSHOTS, "data-1767225600", ns)
    assert snap["status"]["readyToUse"] is True
    assert host["snapshots"][0]["name"] == "data-1767225600"

    restore = _restore_session(
        {
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "restored"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": STORAGE_CLASS,
                        "resources": {"requests": {"storage": "10Mi"}},
                        "dataSource": {
                            "kind": "VolumeSnapshot",
                            "name": "data-1767225600",
                            "apiGroup": "snapshot.storage.k8s.io",
                        },
                    },
                }
            ]
        }
    )
    await rawkube.create(RESTORESESSIONS, restore, ns)
    done = await _restored(rawkube, ns)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert [s["hostname"] for s in done["status"]["stats"]] == ["restored"]
    new_handle = await volume_handle(rawkube, ns, "restored")
    assert new_handle != handle
    assert (csi_stack.volume_dir(new_handle) / "db.bin").read_bytes() == payload


def _statefulset() -> JSON:
    labels = {"app": "db"}
    return {
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "db", "image": "busybox"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": STORAGE_CLASS,
                        "resources": {"requests": {"storage": "10Mi"}},
                    },
                }
            ],
        },
    }


async def test_statefulset_replicas_are_snapshotted_and_keep_last_two_remain(
    csi_stack: CsiStack, rawkube: Kube, namespace: str, run_operator: OperatorFactory
) -> None:
    ns = namespace
    await rawkube.create(STATEFULSETS, _statefulset(), ns)
    claims = [f"data-db-{i}" for i in range(3)]
    for i, c in enumerate(claims):
        handle = await volume_handle(rawkube, ns, c, timeout=90)
        (csi_stack.volume_dir(handle) / "replica").write_text(f"replica {i}")
    target = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}
    policy = {"name": "keep-last-2", "keepLast": 2}
    await rawkube.create(BACKUPCONFIGURATIONS, _bc(target, retentionPolicy=policy), ns)
    await run_operator()
    await _invoker_phase(rawkube, ns, "Ready")

    first = await _backup(rawkube, ns, 1_767_225_600)
    assert first["status"]["phase"] == "Succeeded", first["status"]
    assert sorted(_hosts(first)) == claims
    snaps = (await rawkube.list(VOLUMESNAPSHOTS, ns))["items"]
    assert sorted(s["metadata"]["name"] for s in snaps) == [f"{c}-1767225600" for c in claims]

    for at in (1_767_229_200, 1_767_232_800):
        session = await _backup(rawkube, ns, at)
        assert session["status"]["phase"] == "Succeeded", session["status"]

    want = {c: [f"{c}-1767229200", f"{c}-1767232800"] for c in claims}

    async def kept() -> dict[str, list[str]] | None:
        per_claim: dict[str, list[str]] = {}
        for s in (await rawkube.list(VOLUMESNAPSHOTS, ns))["items"]:
            source = s["spec"]["source"]["persistentVolumeClaimName"]
            per_claim.setdefault(source, []).append(s["metadata"]["name"])
        got = {c: sorted(n) for c, n in per_claim.items()}
        return got if got == want else None

    # the oldest go once the snapshot-controller released their finalizers
    await eventually(kept, timeout=30, what=f"exactly {want}")

    # restore every replica's claim for a new StatefulSet from the newest snapshots
    source = {
        "kind": "VolumeSnapshot",
        "name": "data-db-${POD_ORDINAL}-1767232800",
        "apiGroup": "snapshot.storage.k8s.io",
    }
    template = {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "10Mi"}},
            "dataSource": source,
        },
    }
    target = {
        "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db2"},
        "replicas": 3,
        "volumeClaimTemplates": [template],
    }
    restore = _restore_session(target)
    await rawkube.create(RESTORESESSIONS, restore, ns)
    done = await _restored(rawkube, ns)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert sorted(h["hostname"] for h in done["status"]["stats"]) == [
        f"data-db2-{i}" for i in range(3)
    ]
    for i in range(3):
        handle = await volume_handle(rawkube, ns, f"data-db2-{i}")
        assert (csi_stack.volume_dir(handle) / "replica").read_text() == f"replica {i}"


async def test_a_deployments_claims_are_snapshotted_without_a_sidecar(
    csi_stack: CsiStack, rawkube: Kube, namespace: str, run_operator: OperatorFactory
) -> None:
    ns = namespace
    for c in ("one", "two"):
        await rawkube.create(PVCS, claim(c), ns)
        await volume_handle(rawkube, ns, c)
    volumes = [
        {"name": "a", "persistentVolumeClaim": {"claimName": "one"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "b", "persistentVolumeClaim": {"claimName": "two"}},
    ]
    labels = {"app": "web"}
    web = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "busybox"}], "volumes": volumes},
            },
        },
    }
    await rawkube.create(DEPLOYMENTS, web, ns)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    await rawkube.create(BACKUPCONFIGURATIONS, _bc(target), ns)
    await run_operator()
    await _invoker_phase(rawkube, ns, "Ready")
    session = await _backup(rawkube, ns, 1_767_225_600)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert sorted(_hosts(session)) == ["one", "two"]
    live = await rawkube.get(DEPLOYMENTS, "web", ns)
    pod = live["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["app"]
    assert not pod.get("initContainers")
    assert not (await rawkube.list(JOBS, ns))["items"]


async def test_a_class_naming_a_missing_driver_fails_at_the_deadline_saying_why(
    csi_stack: CsiStack, rawkube: Kube, namespace: str, run_operator: OperatorFactory
) -> None:
    ns = namespace
    klass = f"nope-{ns}"[:63]
    await rawkube.create(
        SNAPSHOTCLASSES,
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": klass},
            "driver": "nope.csi.example.com",
            "deletionPolicy": "Delete",
        },
    )
    try:
        await rawkube.create(PVCS, claim("data"), ns)
        await volume_handle(rawkube, ns, "data")
        target = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
        await rawkube.create(BACKUPCONFIGURATIONS, _bc(target, klass, timeOut="8s"), ns)
        await run_operator()
        await _invoker_phase(rawkube, ns, "Ready")
        session = await _backup(rawkube, ns, 1_767_225_600, timeout=40)
    finally:
        await rawkube.delete(SNAPSHOTCLASSES, klass)
    assert session["status"]["phase"] == "Failed"
    host = _hosts(session)["data"]
    assert host["phase"] == "Failed"
    assert "nope.csi.example.com" in host["error"]


async def test_the_snapshot_controllers_error_is_surfaced_as_is(
    csi_stack: CsiStack, rawkube: Kube, namespace: str, run_operator: OperatorFactory
) -> None:
    """A claim the stand-in kubelet provisioned (hostPath, not CSI) cannot be snapshotted;
    the snapshot-controller says so on the VolumeSnapshot and the session fails with it."""
    ns = namespace
    body = claim("plain")
    del body["spec"]["storageClassName"]  # type: ignore[attr-defined]
    await rawkube.create(PVCS, body, ns)

    async def bound() -> bool:
        return (await rawkube.get(PVCS, "plain", ns)).get("status", {}).get("phase") == "Bound"

    await eventually(bound, timeout=30, what="claim plain Bound")
    target = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "plain"}
    await rawkube.create(BACKUPCONFIGURATIONS, _bc(target, timeOut="60s"), ns)
    await run_operator(volume_snapshot_error_grace=3)  # the error is final, not retried
    await _invoker_phase(rawkube, ns, "Ready")
    session = await _backup(rawkube, ns, 1_767_225_600)
    assert session["status"]["phase"] == "Failed"
    host = _hosts(session)["plain"]
    snap = await rawkube.get(VOLUMESNAPSHOTS, "plain-1767225600", ns)
    assert host["error"] == snap["status"]["error"]["message"]
    assert "cannot find CSI PersistentVolumeSource" in host["error"]


async def test_a_missing_snapshot_class_keeps_the_invoker_not_ready(
    csi_stack: CsiStack, rawkube: Kube, namespace: str, run_operator: OperatorFactory
) -> None:
    ns = namespace
    target = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
    await rawkube.create(BACKUPCONFIGURATIONS, _bc(target, "no-such-class"), ns)
    await run_operator()
    bc = await _invoker_phase(rawkube, ns, "NotReady")
    conds = {c["type"]: c for c in bc["status"]["conditions"]}
    found = conds["VolumeSnapshotClassFound"]
    assert found["status"] == "False"
    assert "VolumeSnapshotClass no-such-class does not exist" in found["message"]


async def test_a_restore_from_a_missing_snapshot_fails_at_its_deadline_saying_why(
    csi_stack: CsiStack, rawkube: Kube, namespace: str, run_operator: OperatorFactory
) -> None:
    ns = namespace
    template = {
        "metadata": {"name": "restored"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "10Mi"}},
            "dataSource": {
                "kind": "VolumeSnapshot",
                "name": "no-such-snapshot",
                "apiGroup": "snapshot.storage.k8s.io",
            },
        },
    }
    restore = _restore_session({"volumeClaimTemplates": [template]})
    restore["spec"]["timeOut"] = "8s"
    await rawkube.create(RESTORESESSIONS, restore, ns)
    await run_operator()
    done = await _restored(rawkube, ns)
    assert done["status"]["phase"] == "Failed"
    (host,) = done["status"]["stats"]
    assert (host["hostname"], host["phase"]) == ("restored", "Failed")
    assert "not Bound by the restore's deadline" in host["error"]
    assert "no-such-snapshot" in host["error"]
