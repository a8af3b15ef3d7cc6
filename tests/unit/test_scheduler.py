"""The cron engine keeps one job per invoker, stays silent while paused, never bursts on
resume, names sessions after the scheduled tick, and replays a missed tick only within
its grace period (and never one from before the invoker existed); its trigger fires when
the schedule does."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import pickle
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from stash.cron import parse_schedule
from stash.scheduler import CronEngine, to_apscheduler_trigger

NOW = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=dt.UTC)
NEW_YORK = ZoneInfo("America/New_York")


def _engine(fired: list[tuple[str, dt.datetime]], grace: float = 0.0) -> CronEngine:
    async def fire(key: str, when: dt.datetime) -> None:
        fired.append((key, when))

    return CronEngine(fire, missed_grace=grace, now=lambda: NOW)


async def test_register_pause_resume_and_change_keep_one_job() -> None:
    fired: list[tuple[str, dt.datetime]] = []
    engine = _engine(fired)
    engine.start()
    try:
        every5 = parse_schedule("*/5 * * * *")
        engine.register("BackupConfiguration/ns/a", every5, paused=False)
        assert engine.next_fire_time("BackupConfiguration/ns/a") is not None
        engine.register("BackupConfiguration/ns/a", every5, paused=True)
        assert engine.next_fire_time("BackupConfiguration/ns/a") is None
        engine.register("BackupConfiguration/ns/a", every5, paused=False)
        hourly = parse_schedule("0 * * * *")
        engine.register("BackupConfiguration/ns/a", hourly, paused=False)
        nxt = engine.next_fire_time("BackupConfiguration/ns/a")
        assert nxt is not None and nxt.minute == 0
        assert engine.keys() == ["BackupConfiguration/ns/a"]
        engine.unregister("BackupConfiguration/ns/a")
        assert engine.keys() == [] and engine.next_fire_time("BackupConfiguration/ns/a") is None
    finally:
        engine.stop()
    assert fired == [], "registering, pausing or resuming never fires by itself"


async def test_tick_is_named_after_the_scheduled_minute() -> None:
    fired: list[tuple[str, dt.datetime]] = []
    engine = _engine(fired)
    engine.register("k", parse_schedule("*/1 * * * *"), paused=False)
    await engine._tick("k")  # APScheduler calls this a little after 12:00:00
    assert fired == [("k", dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC))]


async def test_missed_tick_runs_once_within_grace_only() -> None:
    fired: list[tuple[str, dt.datetime]] = []
    sched = parse_schedule("0 12 * * *")
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for grace, expect in ((0.0, 0), (10.0, 0), (60.0, 1)):
        fired.clear()
        engine = _engine(fired, grace)
        engine.register("k", sched, paused=False, not_before=created)
        engine.start()

        await asyncio.sleep(0.05)
        engine.stop()
        assert len(fired) == expect, (grace, fired)
    fired.clear()
    engine = _engine(fired, 60.0)
    engine.register("k", sched, paused=False, not_before=NOW)  # created after the tick
    engine.start()

    await asyncio.sleep(0.05)
    engine.stop()
    assert fired == []


# --- APScheduler ------------------------------------------------------------------------


def test_apscheduler_trigger_delegates_to_the_schedule() -> None:
    schedule = parse_schedule("CRON_TZ=America/New_York 0 1 * * 0")
    trigger = to_apscheduler_trigger(schedule)
    now = dt.datetime(2024, 10, 30, 12, 0, tzinfo=NEW_YORK)  # a Wednesday
    first = trigger.get_next_fire_time(None, now)
    assert first.isoformat() == "2024-11-03T01:00:00-04:00"  # Sunday, 0 = Sunday
    assert trigger.get_next_fire_time(first, now).isoformat() == "2024-11-03T01:00:00-05:00"
    assert str(trigger) == "cron[CRON_TZ=America/New_York 0 1 * * 0]"
    # APScheduler's own crontab reading would have picked Monday.
    theirs = CronTrigger.from_crontab("0 1 * * 0", timezone=NEW_YORK).get_next_fire_time(None, now)
    assert theirs.strftime("%A") == "Monday"


def test_apscheduler_trigger_pickles_as_its_schedule() -> None:
    trigger = to_apscheduler_trigger(parse_schedule("TZ=Europe/Berlin 0 0 1 * MON"))
    restored = pickle.loads(pickle.dumps(trigger))
    assert restored.schedule == trigger.schedule
    now = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    assert restored.get_next_fire_time(None, now) == trigger.get_next_fire_time(None, now)


async def test_a_tick_cancelled_at_shutdown_is_not_logged_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()

    async def fire(key: str, when: dt.datetime) -> None:
        started.set()
        await asyncio.Event().wait()  # a session create still in flight at shutdown

    engine = CronEngine(fire, missed_grace=60.0, now=lambda: NOW)
    engine.register("k", parse_schedule("0 12 * * *"), paused=False)
    engine.start()  # the missed tick runs at once
    await asyncio.wait_for(started.wait(), 5)
    engine.stop()
    me = asyncio.current_task()
    ticks = [t for t in asyncio.all_tasks() if t is not me]
    for t in ticks:
        t.cancel()
    await asyncio.gather(*ticks, return_exceptions=True)
    assert ticks, "the tick was running"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
