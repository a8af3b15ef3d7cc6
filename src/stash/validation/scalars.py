"""Scalar formats Stash fields use: Go durations and cron schedules.

Not for: whole-object rules. `parse_duration` is public so the operator reads `timeOut`
and `retryConfig.delay` the way the webhook validated them.
"""

from __future__ import annotations

import re
from datetime import timedelta

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


#: Go's longest duration (int64 nanoseconds, about 292 years): longer ones do not parse in
#: Go either, and in Python they overflow date arithmetic (`now + timeOut`).
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


#: The shortest `@every` interval we accept.
MIN_EVERY = timedelta(minutes=1)


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (`1h30m`, `10m`, `2.5s`); ValueError if malformed
    or longer than Go allows (about 2562047h)."""
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
    if total > MAX_DURATION_SECONDS:
        raise ValueError(f'duration "{text}" is too long: at most 2562047h (about 292 years)')
    return sign * total


def schedule_problem(schedule: str) -> str | None:
    """What is wrong with a cron `schedule` (None when it is valid), naming the schedule.

    A schedule means what a Kubernetes CronJob schedule means (§5.2.1); the cron engine
    is the one authority on that. One rule is ours: `@every` shorter than a minute is
    refused (robfig would fire every second for `@every 1ns`; sessions that close would
    overlap and be Skipped, and a CronJob's granularity is a minute anyway).
    """
    try:
        parsed = parse_schedule(schedule)
    except CronError as exc:
        return str(exc)
    if parsed.every is not None and parsed.every < MIN_EVERY:
        return (
            f'schedule "{schedule}": @every must be at least 1m (got {parsed.every}); '
            "backups closer together than a minute overlap"
        )
    return None
