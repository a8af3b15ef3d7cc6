"""When a session runs `restic check`: on the operator's schedule, and always when the
repository's integrity is not known to be good or the invoker's last session failed."""

from __future__ import annotations

import datetime as dt

from stash.api.repository import RepositoryStatus
from stash.controllers.sessiontargets import integrity_check_due

NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
DAY = 86400.0


def checked(hours_ago: float, integrity: bool | None = True) -> RepositoryStatus:
    return RepositoryStatus(
        integrity=integrity,
        last_integrity_check_time=NOW - dt.timedelta(hours=hours_ago),
        last_backup_time=NOW - dt.timedelta(hours=1),
        snapshot_count=1,
    )


def test_a_recent_good_check_is_not_repeated() -> None:
    assert not integrity_check_due(checked(1), DAY, NOW, last_failed=False)


def test_the_check_is_due_once_the_interval_has_passed() -> None:
    assert integrity_check_due(checked(24), DAY, NOW, last_failed=False)


def test_interval_zero_checks_every_session_as_stash_does() -> None:
    assert integrity_check_due(checked(0), 0, NOW, last_failed=False)


def test_a_failed_last_session_or_a_bad_integrity_always_checks() -> None:
    assert integrity_check_due(checked(1), DAY, NOW, last_failed=True)
    assert integrity_check_due(checked(1, integrity=False), DAY, NOW, last_failed=False)


def test_a_repository_with_backups_but_no_recorded_check_is_checked() -> None:
    backed_up = RepositoryStatus(snapshot_count=3, last_backup_time=NOW)
    assert integrity_check_due(backed_up, DAY, NOW, last_failed=False)
    backed_up.integrity = True  # recorded by an operator that kept no check time
    assert integrity_check_due(backed_up, DAY, NOW, last_failed=False)


def test_a_repository_without_any_backup_has_nothing_to_check_yet() -> None:
    assert not integrity_check_due(None, DAY, NOW, last_failed=False)
    assert not integrity_check_due(RepositoryStatus(), DAY, NOW, last_failed=False)
    assert integrity_check_due(None, 0, NOW, last_failed=False)
