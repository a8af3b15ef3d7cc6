"""Which foreign restic locks the agent judges stale from heartbeats (pure rule)."""

from __future__ import annotations

import datetime as dt

from stash.agent.lockpolicy import Beat, owner_gone
from stash.restic import LockInfo

T = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def lock(host: str, at: dt.datetime) -> LockInfo:
    return LockInfo(id="a" * 64, time=at, hostname=host, pid=42)


def test_lock_of_an_executor_whose_heartbeat_stopped_in_a_final_session_is_stale() -> None:
    beats = [Beat(holder="web-1", renewed=T, session_over=True, pids=frozenset({42}))]
    assert owner_gone(lock("web-1", T - dt.timedelta(minutes=3)), beats)
    assert owner_gone(lock("web-1", T + dt.timedelta(seconds=4)), beats)  # taken just before death


def test_locks_of_live_or_unrelated_executors_stay() -> None:
    running = [Beat(holder="web-1", renewed=T, session_over=False, pids=frozenset({42}))]
    assert not owner_gone(lock("web-1", T), running), "session still running"
    dead = [Beat(holder="web-1", renewed=T, session_over=True, pids=frozenset({42}))]
    assert not owner_gone(lock("web-1", T + dt.timedelta(minutes=2)), dead), "a newer backup"
    assert not owner_gone(lock("web-2", T), dead), "another host"
    assert not owner_gone(lock("web-1", T), []), "no heartbeat known"


def test_a_dead_executor_of_the_same_name_elsewhere_is_no_proof() -> None:
    # the heartbeat's holder shares the lock's host name, but it never ran that PID:
    # the lock is another namespace's live `web-1`
    dead = [Beat(holder="web-1", renewed=T, session_over=True, pids=frozenset({7, 9}))]
    assert not owner_gone(lock("web-1", T), dead)
    assert not owner_gone(lock("web-1", T), [Beat(holder="web-1", renewed=T, session_over=True)])
