"""When a backup invoker is stale: no successful backup within its schedule's period plus
a slack (pure).

What it is for: `overdue_period(schedule, since, now, slack)` — the fire time whose backup
is overdue, or None. `since` is the invoker's last successful backup (else its
creation). The first fire after `since` is the backup that should have succeeded; once
`now` passes it plus `slack` the invoker is stale, and stays so until a backup succeeds.
The value returned is the latest fire time at least `slack` ago: it changes once per
period, so the operator reports a stale invoker once per period by keying its reports on
it (`controllers.staleness`), however often it looks.

Not for: reading sessions or sending anything.
"""

from __future__ import annotations

import datetime as dt

from stash.cron import CronError, CronSchedule

__all__ = ["overdue_period"]

_CHAIN_LIMIT = 100_000


def _latest_fire_at_or_before(
    schedule: CronSchedule, since: dt.datetime, when: dt.datetime
) -> dt.datetime:
    try:
        return schedule.previous_before(when + dt.timedelta(seconds=1))
    except CronError:  # @every: its fire times count from `since`
        assert schedule.every is not None
        steps = int((when - since) / schedule.every)
        return since + schedule.every * min(max(steps, 1), _CHAIN_LIMIT)


def overdue_period(
    schedule: CronSchedule, since: dt.datetime, now: dt.datetime, slack: dt.timedelta
) -> dt.datetime | None:
    """The period (its fire time) for which a backup is overdue, or None (module docstring)."""
    due = schedule.next_after(since)
    if now < due + slack:
        return None
    return max(_latest_fire_at_or_before(schedule, since, now - slack), due)
