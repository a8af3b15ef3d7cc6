"""The stale-lock policy: only provably stale locks, never a live one."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from stash.restic.ledger import RunLedger
from stash.restic.locks import restic_alive, stale_locks, unlock_would_remove
from stash.restic.models import LockInfo

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def lock(age_min: float, host: str = "pod-a", pid: int = 7, lid: str = "a") -> LockInfo:
    return LockInfo(id=lid * 64, time=NOW - timedelta(minutes=age_min), hostname=host, pid=pid)


def test_dead_pid_of_our_own_run_is_stale_once_old_enough() -> None:
    locks = [lock(20, lid="a"), lock(2, lid="b")]
    stale = stale_locks(
        locks, now=NOW, this_host="pod-a", process_alive=lambda _: False, owned=lambda _: True
    )
    assert [s.id[0] for s in stale] == ["a"]


def test_same_host_name_is_not_proof_of_ownership() -> None:
    # two `postgres-0` pods in different namespaces share a repository: the other pod's
    # PID is not running here, yet its lock is live
    stale = stale_locks(
        [lock(20, host="postgres-0", pid=27)],
        now=NOW,
        this_host="postgres-0",
        min_age=timedelta(0),
        process_alive=lambda _: False,
        owned=lambda _: False,
    )
    assert stale == []


def test_restic_unlock_rule_would_take_other_pods_locks_of_the_same_name() -> None:
    locks = [
        lock(1, host="postgres-0", pid=27, lid="a"),  # the other namespace's live lock
        lock(45, host="elsewhere", pid=3, lid="b"),  # restic's 30-minute rule
        lock(1, host="elsewhere", pid=4, lid="c"),
    ]
    gone = unlock_would_remove(
        locks, now=NOW, this_host="postgres-0", process_alive=lambda _: False
    )
    assert [g.id[0] for g in gone] == ["a", "b"]


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
        owned=lambda _: True,
    )
    assert len(stale) == 1


def test_restic_alive_is_about_restic_processes() -> None:
    assert not restic_alive(0)
    assert not restic_alive(-5)
    # This process lives but is not restic: a lock with its PID is not held by restic.
    assert not restic_alive(os.getpid())
    assert not restic_alive(2**22 + 1)  # above pid_max: no such process


def test_run_ledger_keeps_only_runs_that_did_not_end_by_themselves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = RunLedger(tmp_path / "runs.json")
    heard: list[int] = []
    ledger.add_listener(lambda: heard.append(len(ledger.runs())))
    ledger.started(27, NOW - timedelta(minutes=5))
    ledger.started(31, NOW - timedelta(minutes=1))
    ledger.ended(31)
    assert ledger.pids() == [27] and heard == [1, 2, 1]
    # a second ledger on the same file (the restarted container) sees the killed run
    again = RunLedger(tmp_path / "runs.json")
    assert again.may_own(lock(2, pid=27))
    assert not again.may_own(lock(2, pid=31))  # ended: its lock was released
    assert not again.may_own(lock(10, pid=27))  # taken before that run started


def test_an_unreadable_ledger_proves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "runs.json"
    path.write_text("{not json")
    assert RunLedger(path).runs() == []
