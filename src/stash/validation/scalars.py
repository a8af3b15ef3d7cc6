"""Scalar formats Stash fields use: Go durations and cron schedules.

Not for: whole-object rules. `parse_duration` is public so the operator reads `timeOut`
and `retryConfig.delay` the way the webhook validated them.
"""

from __future__ import annotations

import re

from stash.cron import CronError, parse_schedule

__all__ = ["parse_duration", "schedule_problem"]


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (`1h30m`, `10m`, `2.5s`); ValueError if malformed."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f'invalid duration "{text}": use a Go duration such as 30m or 1h30m')
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f'invalid duration "{text}": use a Go duration such as 30m or 1h30m')
    return sign * total


def schedule_problem(schedule: str) -> str | None:
    """What is wrong with a cron `schedule` (None when it is valid), naming the schedule.

    A schedule means what a Kubernetes CronJob schedule means (§5.2.1); the cron engine
    is the one authority on that.
    """
    try:
        parse_schedule(schedule)
    except CronError as exc:
        return str(exc)
    return None
