"""The phase rules of stash-api.md §1.3-1.5, table by table."""

from __future__ import annotations

import datetime as dt

import pytest

from stash.api.backupsession import BackupSessionStatus, BackupTargetStatus, HostBackupStats
from stash.api.restoresession import HostRestoreStats, RestoreSessionStatus
from stash.contract import phases as P
from stash.kube.conditions import set_condition

T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def conds(**kw: bool | str):  # type: ignore[no-untyped-def]
    out = None
    for k, v in kw.items():
        out = set_condition(out, k, v, "r", now=T)
    return out or []


@pytest.mark.parametrize(
    ("given", "driver", "phase"),
    [
        ({}, None, "NotReady"),
        (dict(ValidationPassed=False), None, "Invalid"),
        (
            dict(
                RepositoryFound=True,
                BackendSecretFound=True,
                ValidationPassed=True,
                ScheduleRegistered=True,
            ),
            None,
            "Ready",
        ),
        (
            dict(
                RepositoryFound=True,
                BackendSecretFound=False,
                ValidationPassed=True,
                ScheduleRegistered=True,
            ),
            "Restic",
            "NotReady",
        ),
        (dict(ValidationPassed=True, ScheduleRegistered=True), "VolumeSnapshotter", "Ready"),
        (
            dict(
                RepositoryFound=True,
                BackendSecretFound=True,
                ValidationPassed=True,
                ScheduleRegistered=True,
                BackupTargetFound=False,
            ),
            None,
            "NotReady",
        ),
    ],
)
def test_invoker_phase(given: dict[str, bool], driver: str | None, phase: str) -> None:
    assert P.backup_invoker_phase(conds(**given), driver) == phase


def _target(total: int | None, *phases: str, **c: bool) -> BackupTargetStatus:
    return BackupTargetStatus(
        total_hosts=total,
        stats=[HostBackupStats(hostname=f"host-{i}", phase=p) for i, p in enumerate(phases)],  # type: ignore[arg-type]
        conditions=conds(**c),
    )


def test_target_phase_counts_final_hosts() -> None:
    assert P.target_phase(_target(None)) == "Pending"
    assert P.target_phase(_target(3, "Succeeded")) == "Running"
    assert P.target_phase(_target(2, "Succeeded", "Succeeded")) == "Succeeded"
    assert P.target_phase(_target(2, "Succeeded", "Failed")) == "Failed"
    assert P.target_phase(_target(2, BackupExecutorEnsured=False)) == "Failed"


def test_session_phase_is_final_once_the_end_is_recorded() -> None:
    st = BackupSessionStatus(targets=[_target(1, "Succeeded")])
    assert P.backup_session_phase(st) == "Running"
    assert P.session_completed(st)
    st.conditions = conds(MetricsPushed=True)
    assert P.backup_session_phase(st) == "Succeeded"
    st.conditions = conds(MetricsPushed=True, RetentionPolicyApplied=False)
    assert P.backup_session_phase(st) == "Failed"


def test_a_failed_metrics_push_never_fails_a_session_that_backed_up() -> None:
    st = BackupSessionStatus(targets=[_target(1, "Succeeded")])
    st.conditions = conds(MetricsPushed=False, RepositoryMetricsPushed=False)
    assert P.backup_session_phase(st) == "Succeeded"
    st.targets = [_target(1, "Failed")]
    assert P.backup_session_phase(st) == "Failed"
    st.conditions = conds(BackupSkipped=True, MetricsPushed=False)
    assert P.backup_session_phase(st) == "Skipped"


def test_session_phase_order_of_rules() -> None:
    assert P.backup_session_phase(BackupSessionStatus()) == "Pending"
    assert (
        P.backup_session_phase(BackupSessionStatus(conditions=conds(BackupSkipped=True)))
        == "Skipped"
    )
    st = BackupSessionStatus(
        targets=[_target(2, "Succeeded")],
        conditions=conds(DeadlineExceeded=True, MetricsPushed=True),
    )
    assert P.backup_session_phase(st) == "Failed"
    st.conditions = conds(DeadlineExceeded=True, MetricsPushed=False)
    assert P.backup_session_phase(st) == "Failed"


def test_restore_phase() -> None:
    st = RestoreSessionStatus(total_hosts=1, conditions=conds(RepositoryFound=True))
    assert P.restore_session_phase(st) == "Running"
    st.stats = [HostRestoreStats(hostname="host-0", phase="Succeeded")]
    assert P.restore_completed(st) and P.restore_session_phase(st) == "Running"
    st.conditions = conds(RepositoryFound=True, MetricsPushed=True)
    assert P.restore_session_phase(st) == "Succeeded"
    st.conditions = conds(RepositoryFound=True, MetricsPushed=False)
    assert P.restore_session_phase(st) == "Succeeded", "a failed push does not fail it"
    st.stats = [HostRestoreStats(hostname="host-0", phase="Unknown")]
    assert P.restore_session_phase(st) == "Unknown"
    assert (
        P.restore_session_phase(RestoreSessionStatus(conditions=conds(ValidationPassed=False)))
        == "Invalid"
    )
    assert (
        P.restore_session_phase(RestoreSessionStatus(conditions=conds(RepositoryFound=False)))
        == "Pending"
    )
