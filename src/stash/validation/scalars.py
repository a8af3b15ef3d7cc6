"""Scalar formats Stash fields use: Go durations and cron schedules.

Not for: whole-object rules. `parse_duration` is public so the operator reads `timeOut`
and `retryConfig.delay` the way the webhook validated them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence

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


# A schedule means what a Kubernetes CronJob schedule means (§5.2.1). The cron engine
# (`stash.cron.parse_schedule`) is the authority; until it is importable, a structural
# check with the same field ranges stands in, so the webhook never accepts garbage.
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _WEEKDAYS),
)


def _field_value(token: str, low: int, names: Sequence[str]) -> int:
    if token.upper() in names:
        return names.index(token.upper()) + low
    if not token.isdigit():
        raise ValueError(f'"{token}" is not a number')
    return int(token)


def _structural_schedule_problem(schedule: str) -> str | None:
    problem = _structural_problem(schedule)
    return f'schedule "{schedule}": {problem}' if problem else None


def _structural_problem(schedule: str) -> str | None:
    expr = re.sub(r"^(CRON_TZ|TZ)=\S+\s+", "", schedule.strip())
    if expr.startswith("@"):
        return None if expr in _DESCRIPTORS else f'unknown descriptor "{expr}"'
    parts = expr.split()
    if len(parts) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
    for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        for item in part.split(","):
            rng, _, step = item.partition("/")
            try:
                if step and (not step.isdigit() or int(step) == 0):
                    raise ValueError(f'step "{step}" must be a positive number')
                if rng not in ("*", "?"):
                    bounds = [_field_value(t, low, names) for t in rng.split("-", 1)]
                    if any(not low <= b <= high for b in bounds):
                        raise ValueError(f"{rng} is out of range {low}-{high}")
                    if len(bounds) == 2 and bounds[0] > bounds[1]:
                        raise ValueError(f"range {rng} is backwards")
            except ValueError as exc:
                return f'{name} field "{part}": {exc}'
    return None


def schedule_problem(schedule: str) -> str | None:
    """What is wrong with a cron `schedule` (None when it is valid), naming the schedule."""
    try:
        cron = importlib.import_module("stash.cron")
    except ModuleNotFoundError:
        return _structural_schedule_problem(schedule)
    try:
        cron.parse_schedule(schedule)
    except cron.CronError as exc:
        return str(exc)
    return None
