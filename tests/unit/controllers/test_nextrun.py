"""`status.nextBackupTime` comes from the cron engine's job, and the reconciler looks
again just after that tick."""

from __future__ import annotations

import datetime as dt

from stash.controllers.nextrun import AFTER_TICK, earliest, next_run, without_unset
from stash.cron import parse_schedule
from stash.scheduler import CronEngine


async def _fire(key: str, when: dt.datetime) -> None:
    return None


async def test_next_run_is_the_engine_job_and_none_while_paused() -> None:
    engine = CronEngine(_fire)
    schedule = parse_schedule("CRON_TZ=Asia/Tokyo 30 4 * * *")
    engine.start()
    try:
        engine.register("BackupConfiguration/ns/bc", schedule, paused=False)
        when = engine.next_fire_time("BackupConfiguration/ns/bc")
        assert when is not None
        now = when - dt.timedelta(hours=1)
        shown = next_run(engine, "BackupConfiguration/ns/bc", now=lambda: now)
        assert shown.wire == when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert shown.recheck_after == 3600 + AFTER_TICK
        engine.register("BackupConfiguration/ns/bc", schedule, paused=True)
        assert next_run(engine, "BackupConfiguration/ns/bc").wire is None
        assert next_run(engine, "BackupConfiguration/ns/other").recheck_after is None
    finally:
        engine.stop()


def test_earliest_and_without_unset() -> None:
    assert earliest(None, 15.0, 3.0) == 3.0
    assert earliest(None, None) is None
    assert without_unset({"phase": "Ready", "nextBackupTime": None}) == {"phase": "Ready"}
