"""The stale-lock policy: only provably stale locks, never a live one."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from stash.restic.locks import restic_alive, stale_locks
from stash.restic.models import LockInfo

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def lock(age_min: float, host: str = "pod-a", pid: int = 7, lid: str = "a") -> LockInfo:
    return LockInfo(id=lid * 64, time=NOW - timedelta(minutes=age_min), hostname=host, pid=pid)


def test_dead_pid_on_this_host_is_stale_once_old_enough() -> None:
    locks = [lock(20, lid="a"), lock(2, lid="b")]
    stale = stale_locks(locks, now=NOW, this_host="pod-a", process_alive=lambda _: False)
    assert [s.id[0] for s in stale] == ["a"]


def test_live_pid_on_this_host_is_never_stale_even_if_session_final() -> None:
    stale = stale_locks(
        [lock(600)],
        now=NOW,
        this_host="pod-a",
        process_alive=lambda _: True,
        session_final=lambda _: True,
    )
    assert stale == []


def test_other_host_needs_a_final_session() -> None:
    locks = [lock(30, host="pod-b", lid="a"), lock(30, host="pod-c", lid="c")]
    stale = stale_locks(
        locks,
        now=NOW,
        this_host="pod-a",
        process_alive=lambda _: False,  # PIDs of other hosts mean nothing here
        session_final=lambda lk: lk.hostname == "pod-b",
    )
    assert [s.hostname for s in stale] == ["pod-b"]


def test_young_lock_survives_a_final_session() -> None:
    # A lock refreshed within the last minutes belongs to a running restic somewhere.
    stale = stale_locks(
        [lock(3, host="pod-b")], now=NOW, this_host="pod-a", session_final=lambda _: True
    )
    assert stale == []


def test_min_age_is_configurable() -> None:
    stale = stale_locks(
        [lock(0.5)],
        now=NOW,
        this_host="pod-a",
        min_age=timedelta(0),
        process_alive=lambda _: False,
    )
    assert len(stale) == 1


def test_restic_alive_is_about_restic_processes() -> None:
    assert not restic_alive(0)
    assert not restic_alive(-5)
    # This process lives but is not restic: a lock with its PID is not held by restic.
    assert not restic_alive(os.getpid())
    assert not restic_alive(2**22 + 1)  # above pid_max: no such process
