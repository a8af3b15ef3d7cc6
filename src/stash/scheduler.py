"""The cron engine: one APScheduler job per backup invoker, creating BackupSessions.

Runs only in the leader (the operator starts and stops it with the lease). A job's
trigger is `to_apscheduler_trigger` (below), so fire times are exactly a Kubernetes
CronJob's (robfig semantics, per-schedule time zone, DST as upstream). Rules:

* re-registering with the same schedule and pause state is a no-op; a changed schedule
  replaces the job (never two jobs for one invoker);
* paused invokers have no job; resuming schedules from *now*: no catch-up burst;
* a tick names its session after the scheduled fire time (`<invoker>-<unix>`), so a tick
  replayed by a new leader creates nothing twice (the create answers AlreadyExists);
* missed ticks (operator down, leader change): skipped by default; with a grace period,
  the most recent missed tick runs once if it is younger than the grace period.

Not for: deciding whether a session should run (the BackupSession controller does).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from stash.cron import CronError, CronSchedule, parse_schedule

log = logging.getLogger(__name__)

#: Called with (invoker key "kind/namespace/name", scheduled fire time).
Fire = Callable[[str, dt.datetime], Awaitable[None]]


@dataclass(frozen=True)
class _Entry:
    schedule: CronSchedule
    paused: bool
    not_before: dt.datetime | None = None


class CronEngine:
    """Keeps one job per invoker key in an AsyncIOScheduler."""

    def __init__(
        self,
        fire: Fire,
        *,
        missed_grace: float = 0.0,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._fire = fire
        self.missed_grace = missed_grace
        self._now = now
        self._entries: dict[str, _Entry] = {}
        self._scheduler: AsyncIOScheduler | None = None

    @property
    def running(self) -> bool:
        return self._scheduler is not None

    def keys(self) -> list[str]:
        """Invoker keys with a registered (possibly paused) schedule."""
        return sorted(self._entries)

    def next_fire_time(self, key: str) -> dt.datetime | None:
        """When the invoker's job fires next (None: paused, unknown or engine stopped)."""
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(key)
        return job.next_run_time if job is not None else None

    def register(
        self,
        key: str,
        schedule: CronSchedule,
        paused: bool,
        not_before: dt.datetime | None = None,
    ) -> None:
        """Make `key` fire on `schedule` (or not at all while `paused`). A missed tick
        is only ever replayed if it is later than `not_before` (the invoker's creation)."""
        entry = _Entry(schedule, paused, not_before)
        old = self._entries.get(key)
        self._entries[key] = entry
        if old == entry and (self._scheduler is None or paused or self._has_job(key)):
            return
        if self._scheduler is not None:
            self._apply(key, entry, first=old is None)

    def unregister(self, key: str) -> None:
        """Forget `key` (invoker deleted)."""
        self._entries.pop(key, None)
        if self._scheduler is not None and self._has_job(key):
            self._scheduler.remove_job(key)

    def start(self) -> None:
        """Start firing (leader acquired). Applies the missed-tick policy once per key."""
        if self._scheduler is not None:
            return
        self._scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._scheduler.start()
        for key, entry in self._entries.items():
            self._apply(key, entry, first=True)

    def stop(self) -> None:
        """Stop firing (leader lost or shutdown); registrations are kept."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    # ------------------------------------------------------------------ internals
    def _has_job(self, key: str) -> bool:
        return self._scheduler is not None and self._scheduler.get_job(key) is not None

    def _apply(self, key: str, entry: _Entry, *, first: bool) -> None:
        assert self._scheduler is not None
        if self._has_job(key):
            self._scheduler.remove_job(key)
        if entry.paused:
            return
        self._scheduler.add_job(
            self._tick,
            trigger=to_apscheduler_trigger(entry.schedule),
            id=key,
            args=[key],
            # A tick late by more than this (event loop stalled) is dropped rather than
            # run at a surprising time; coalescing avoids bursts after a stall.
            misfire_grace_time=30,
            coalesce=True,
            max_instances=50,
        )
        if first and self.missed_grace > 0 and entry.schedule.every is None:
            now = self._now()
            missed = entry.schedule.previous_before(now)
            late = (now - missed).total_seconds()
            if late <= self.missed_grace and (
                entry.not_before is None or missed > entry.not_before
            ):
                log.info("%s: running missed tick %s once (within grace)", key, missed)
                self._scheduler.add_job(self._fire_at, args=[key, missed])

    async def _tick(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is None or entry.paused:
            return
        now = self._now()
        if entry.schedule.every is not None:
            fire_time = now.replace(microsecond=0)
        else:
            # The scheduled instant this tick belongs to (APScheduler does not pass it).
            fire_time = entry.schedule.previous_before(now + dt.timedelta(seconds=1))
        await self._fire_at(key, fire_time)

    async def _fire_at(self, key: str, fire_time: dt.datetime) -> None:
        # APScheduler runs this as a task of its own that nobody awaits, and logs any
        # BaseException out of it as a failed job: a tick cancelled by the operator's
        # shutdown ends here quietly (it is a missed tick for the next leader, with the
        # missed-tick policy above; sessions are named after the tick, so no duplicate).
        try:
            await self._fire(key, fire_time)
        except asyncio.CancelledError:
            log.info("%s: tick %s cancelled (shutting down)", key, fire_time.isoformat())
        except Exception:
            log.exception("%s: creating the scheduled BackupSession failed", key)


class _ScheduleTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler 3.x trigger that fires when a `CronSchedule` does."""

    __slots__ = ("schedule",)

    def __init__(self, schedule: CronSchedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        # Like the CronJob controller: chain from the last fire time, or start from now.
        try:
            return self.schedule.next_after(previous_fire_time or now)
        except CronError:
            return None

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "schedule": str(self.schedule)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("version") != 1:
            raise ValueError(f"cannot restore a cron trigger saved as {state!r}")
        self.schedule = parse_schedule(state["schedule"])

    def __str__(self) -> str:
        return f"cron[{self.schedule}]"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({self.schedule})>"


def to_apscheduler_trigger(schedule: CronSchedule) -> BaseTrigger:
    """An APScheduler 3.x trigger for `schedule`.

    APScheduler's own `CronTrigger` numbers weekdays from Monday and needs both day fields
    to match, so it cannot read these schedules. This trigger asks `schedule.next_after`:
    from the previous fire time when there is one (missed runs are then found one by one,
    as the CronJob controller does), otherwise from `now`. It pickles as its schedule text.
    """
    return _ScheduleTrigger(schedule)
