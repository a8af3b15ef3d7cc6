"""What a host decides from a live session, and what it writes back (pure rules)."""

from __future__ import annotations

from typing import Any

from stash.agent.stats import (
    Assignment,
    TargetKey,
    backup_assignment,
    is_last_host,
    processing_time,
    snapshot_stats,
    with_backup_condition,
    with_host_stats,
    with_restore_host_stats,
)
from stash.api.backupsession import HostBackupStats
from stash.api.restoresession import HostRestoreStats
from stash.restic import BackupSummary

TARGET = TargetKey("StatefulSet", "db", "demo")


def session(
    *, total: int | None = 3, stats: list[dict[str, Any]] | None = None, **status: Any
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
        "preBackupActions": ["InitializeBackendRepository"],
        "postBackupActions": ["ApplyRetentionPolicy"],
    }
    if total is not None:
        target["totalHosts"] = total
    if stats is not None:
        target["stats"] = stats
    return {
        "metadata": {"name": "bc-1", "namespace": "demo"},
        "status": {"phase": "Running", "targets": [target], **status},
    }


def test_host_with_work_gets_its_target_and_actions() -> None:
    got = backup_assignment(session(), TARGET, "host-1")
    assert got == Assignment(0, 3, ("InitializeBackendRepository",), ("ApplyRetentionPolicy",))


def test_no_work_when_final_uninitiated_reported_or_other_target() -> None:
    assert "Failed" in str(backup_assignment(session(phase="Failed"), TARGET, "host-0"))
    assert "not initiated" in str(backup_assignment(session(total=None), TARGET, "host-0"))
    done = session(stats=[{"hostname": "host-0", "phase": "Failed"}])
    assert "already reported" in str(backup_assignment(done, TARGET, "host-0"))
    other = TargetKey("StatefulSet", "cache", "demo")
    assert isinstance(backup_assignment(session(), other, "host-0"), str)


def test_last_host_is_the_one_all_others_reported_before() -> None:
    two_done = session(
        stats=[
            {"hostname": "host-0", "phase": "Succeeded"},
            {"hostname": "host-2", "phase": "Failed"},
        ]
    )
    assert is_last_host(two_done, 0, "host-1")
    one_done = session(stats=[{"hostname": "host-0", "phase": "Succeeded"}])
    assert not is_last_host(one_done, 0, "host-1")


def test_upserting_host_stats_never_touches_other_hosts() -> None:
    live = session(
        stats=[
            {"hostname": "host-0", "phase": "Succeeded", "duration": "1s"},
            {"hostname": "host-1", "phase": "Failed", "error": "old"},
        ]
    )
    new = with_host_stats(live, 0, HostBackupStats(hostname="host-1", phase="Succeeded"))
    assert new is not None
    stats = {h["hostname"]: h for h in new["targets"][0]["stats"]}
    assert stats["host-0"] == {"hostname": "host-0", "phase": "Succeeded", "duration": "1s"}
    assert stats["host-1"] == {"hostname": "host-1", "phase": "Succeeded"}
    assert new["targets"][0]["phase"] == "Running"  # 2 of 3 hosts reported


def test_nothing_is_written_into_a_final_session() -> None:
    final = session(phase="Succeeded")
    assert with_host_stats(final, 0, HostBackupStats(hostname="host-0", phase="Failed")) is None
    assert with_backup_condition(final, "RetentionPolicyApplied", True, "r", "m") is None


def test_condition_is_added_next_to_existing_ones() -> None:
    live = session(
        conditions=[
            {
                "type": "X",
                "status": "True",
                "reason": "r",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ]
    )
    new = with_backup_condition(live, "RetentionPolicyApplied", False, "Failed", "locked")
    assert new is not None
    types = {c["type"]: c["status"] for c in new["conditions"]}
    assert types == {"X": "True", "RetentionPolicyApplied": "False"}


def test_snapshot_stats_from_a_restic_summary() -> None:
    summary = BackupSummary(
        snapshot_id="0123456789abcdef",
        files_new=2,
        files_changed=1,
        files_unmodified=7,
        total_files_processed=10,
        total_bytes_processed=5 * 1024 * 1024,
        data_added=1536,
        total_duration=63.4,
    )
    stats = snapshot_stats("/data", summary).to_wire()
    assert stats == {
        "name": "01234567",
        "path": "/data",
        "totalSize": "5.000 MiB",
        "uploaded": "1.500 KiB",
        "processingTime": "1m3s",
        "fileStats": {"totalFiles": 10, "newFiles": 2, "modifiedFiles": 1, "unmodifiedFiles": 7},
    }
    assert processing_time(0.2) == "0m0s"


def test_restore_stats_upsert_by_hostname() -> None:
    live = {"status": {"phase": "Running", "stats": [{"hostname": "host-0", "phase": "Failed"}]}}
    new = with_restore_host_stats(live, HostRestoreStats(hostname="host-0", phase="Succeeded"))
    assert new is not None and new["stats"] == [{"hostname": "host-0", "phase": "Succeeded"}]
    done = {"status": {"phase": "Succeeded"}}
    assert with_restore_host_stats(done, HostRestoreStats(hostname="host-1")) is None
