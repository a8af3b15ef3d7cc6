"""The VolumeSnapshotter driver's pure rules (stash.contract.volumesnapshots, §10)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stash.api.common import RetentionPolicy
from stash.contract import phases as P
from stash.contract.volumesnapshots import (
    ERROR_GRACE,
    restore_claims,
    snapshot_body,
    snapshot_claims,
    snapshot_name,
    snapshot_state,
    snapshots_to_forget,
)
from stash.kube.conditions import set_condition


def _sts(replicas: int | None, templates: list[str], volumes: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "spec": {
                "volumes": [{"name": v, "persistentVolumeClaim": {"claimName": v}} for v in volumes]
            }
        },
        "volumeClaimTemplates": [{"metadata": {"name": t}} for t in templates],
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"spec": spec}


def test_a_pvc_target_snapshots_itself() -> None:
    assert snapshot_claims("PersistentVolumeClaim", "data", None, None) == ["data"]


def test_a_deployment_snapshots_its_claim_volumes_once_each() -> None:
    workload = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "a", "persistentVolumeClaim": {"claimName": "one"}},
                        {"name": "b", "emptyDir": {}},
                        {"name": "c", "persistentVolumeClaim": {"claimName": "one"}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "two"}},
                    ]
                }
            }
        }
    }
    assert snapshot_claims("Deployment", "web", workload, None) == ["one", "two"]


def test_a_statefulset_snapshots_replicas_times_templates_plus_plain_claims() -> None:
    workload = _sts(3, ["data", "logs"], ["shared"])
    assert snapshot_claims("StatefulSet", "db", workload, None) == [
        "data-db-0",
        "logs-db-0",
        "data-db-1",
        "logs-db-1",
        "data-db-2",
        "logs-db-2",
        "shared",
    ]


def test_target_replicas_limits_the_statefulset_ordinals() -> None:
    assert snapshot_claims("StatefulSet", "db", _sts(3, ["data"], []), 1) == ["data-db-0"]
    assert snapshot_claims("StatefulSet", "db", _sts(None, ["data"], []), None) == ["data-db-0"]


def test_snapshot_names_carry_the_session_unix_suffix() -> None:
    assert snapshot_name("data-db-0", "nightly-1767225600") == "data-db-0-1767225600"
    assert snapshot_name("data", "by-hand") == "data-by-hand"


def test_snapshot_body_names_class_source_and_labels() -> None:
    body = snapshot_body("data", "ns", "nightly-17", ("BackupConfiguration", "nightly"), "csi")
    assert body["metadata"]["name"] == "data-17"
    assert body["spec"] == {
        "source": {"persistentVolumeClaimName": "data"},
        "volumeSnapshotClassName": "csi",
    }
    labels = body["metadata"]["labels"]
    assert labels["stash.appscode.com/invoker-name"] == "nightly"
    assert labels["stash.appscode.com/backup-session"] == "nightly-17"
    no_class = snapshot_body("data", "ns", "s-1", ("BackupConfiguration", "s"), None)
    assert "volumeSnapshotClassName" not in no_class["spec"]


def test_snapshot_state_ready_failed_pending() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    ready = {"status": {"readyToUse": True, "restoreSize": "1Gi"}}
    assert snapshot_state(ready, now).phase == "Succeeded"
    message = 'VolumeSnapshotContent is invalid: driver "nope" not found'
    old = {
        "metadata": {"creationTimestamp": "2026-01-01T11:58:00Z"},
        "status": {"readyToUse": False, "error": {"message": message}},
    }
    failed = snapshot_state(old, now)
    assert (failed.phase, failed.error) == ("Failed", message)
    assert snapshot_state({}, now).phase == "Pending"


def test_a_young_snapshot_s_error_is_retried_upstream_not_final() -> None:
    # the snapshot-controller writes a conflict on the claim's finalizer into
    # status.error and tries again; the host waits rather than failing the session
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    message = 'Operation cannot be fulfilled on persistentvolumeclaims "one"'
    young = {
        "metadata": {"creationTimestamp": "2026-01-01T11:59:50Z"},
        "status": {"readyToUse": False, "error": {"message": message}},
    }
    state = snapshot_state(young, now)
    assert (state.phase, state.error) == ("Pending", message)
    assert snapshot_state(young, now + ERROR_GRACE).phase == "Failed"


def _snap(name: str, when: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"creationTime": when}}


def test_keep_last_deletes_the_oldest() -> None:
    snaps = [
        _snap("a", "2026-01-01T00:00:00Z"),
        _snap("c", "2026-01-03T00:00:00Z"),
        _snap("b", "2026-01-02T00:00:00Z"),
    ]
    policy = RetentionPolicy(name="p", keep_last=2)
    assert snapshots_to_forget(snaps, policy) == ["a"]


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    snaps = [
        _snap("d1-early", "2026-01-01T01:00:00Z"),
        _snap("d1-late", "2026-01-01T23:00:00Z"),
        _snap("d2", "2026-01-02T12:00:00Z"),
        _snap("d3", "2026-01-03T12:00:00Z"),
    ]
    forget = snapshots_to_forget(snaps, RetentionPolicy(name="p", keep_daily=2))
    assert sorted(forget) == ["d1-early", "d1-late"]
    forget = snapshots_to_forget(snaps, RetentionPolicy(name="p", keep_daily=3))
    assert forget == ["d1-early"]


def test_an_empty_policy_deletes_nothing() -> None:
    snaps = [_snap("a", "2026-01-01T00:00:00Z")]
    assert snapshots_to_forget(snaps, RetentionPolicy(name="p")) == []
    assert snapshots_to_forget(snaps, None) == []


def test_restore_claims_fill_in_the_ordinal() -> None:
    template = {
        "metadata": {"name": "data"},
        "spec": {
            "dataSource": {
                "kind": "VolumeSnapshot",
                "name": "data-db-${POD_ORDINAL}-17",
                "apiGroup": "snapshot.storage.k8s.io",
            }
        },
    }
    claims = restore_claims([template], 2, "ns", "db", {"x": "y"})
    assert [c["metadata"]["name"] for c in claims] == ["data-db-0", "data-db-1"]
    assert [c["spec"]["dataSource"]["name"] for c in claims] == ["data-db-0-17", "data-db-1-17"]
    assert claims[0]["metadata"]["labels"] == {"x": "y"}
    assert template["spec"]["dataSource"]["name"] == "data-db-${POD_ORDINAL}-17"
    plain = restore_claims([template], 1, "ns", None, {})
    assert plain[0]["metadata"]["name"] == "data"


def test_an_invoker_without_the_snapshot_class_is_not_ready() -> None:
    conds = set_condition(None, P.VALIDATION_PASSED, True, "ok", "")
    conds = set_condition(conds, P.SCHEDULE_REGISTERED, True, "ok", "")
    missing = set_condition(conds, P.VOLUME_SNAPSHOT_CLASS_FOUND, False, "missing", "install")
    assert P.backup_invoker_phase(missing, "VolumeSnapshotter") == "NotReady"
    found = set_condition(conds, P.VOLUME_SNAPSHOT_CLASS_FOUND, True, "ok", "")
    assert P.backup_invoker_phase(found, "VolumeSnapshotter") == "Ready"
