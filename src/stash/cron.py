"""Cron schedules as Kubernetes reads them, and when they fire.

What it is for: turning a `spec.schedule` string into a `CronSchedule` and asking it when it
fires (`next_after`, `previous_before`, `fire_times`), so that validation, `kubectl stash`
output, missed-run checks and the in-process scheduler (`stash.scheduler`) all agree
with the CronJob that Stash hands the schedule to (stash-api.md §5.2.1).

Not for: running anything. It has no clock, no I/O and no event loop; callers pass `now`.
It does not build CronJobs either; the CronJob builder takes `expression` and `tz.key` from
here (Kubernetes rejects `TZ=`/`CRON_TZ=` in a new CronJob's `spec.schedule`; the zone goes
in `spec.timeZone`).

Kubernetes parses schedules with robfig/cron v3.0.1 `ParseStandard`
(vendor/github.com/robfig/cron/v3/parser.go) and computes fire times with
`SpecSchedule.Next` (spec.go). This module gives the same answers:

* Five fields: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week
  0-6 or SUN-SAT with 0 = Sunday (`7` is out of range). Names are three letters, any case.
  `?` means `*`. Items are `*`, `N`, `N-M`, each with an optional `/step`; `N/step` means
  `N-max/step`; `*/60` in the minute field is accepted and means minute 0 (robfig does not
  check a step against the range).
* Descriptors (exact, lower case): @yearly @annually @monthly @weekly @daily @midnight
  @hourly, and `@every <Go duration>`.
* Day rule (spec.go `dayMatches`): a field carries robfig's "star bit" when one of its items
  is `*` or `?` with no step or a step of 1 (`*/2` clears it, `*/1` keeps it). If either
  day field has the star bit, a day must match both fields; otherwise it matches if either
  does. So `0 0 1 * MON` is the 1st of each month and every Monday, `0 0 */2 * MON` is odd
  days and Mondays, and `0 0 1-31 * MON` is every day.
* Time zone: a `CRON_TZ=<zone> ` or `TZ=<zone> ` prefix (robfig's syntax), else the `tz`
  argument (our stand-in for `spec.timeZone`), else the operator's default zone.
* Fire times are the whole-minute instants whose wall-clock time in the zone matches.
  Next walks real time (spec.go adds `time.Hour`/`time.Minute` to an instant), so on
  daylight saving changes:
  - spring forward: wall times that do not exist are skipped, not moved. `30 2 * * *` in
    America/New_York does not run on the day clocks jump from 02:00 to 03:00; `0 * * * *`
    runs at 01:00 EST and then 03:00 EDT.
  - fall back: wall times that happen twice fire twice. `0 1 * * *` in America/New_York
    runs at 01:00 EDT and again at 01:00 EST (robfig spec_test.go "1am nightly job (runs
    twice)"; Kubernetes issue #121594 reports the same for a CronJob in Europe/Berlin).
* `@every d` fires `d` after the instant it is asked about (robfig `ConstantDelaySchedule`:
  Next(t) = t truncated to the second + d, d truncated to whole seconds, at least 1s).
  Kubernetes chains it from the CronJob's creation or last schedule time, so chaining
  `next_after` from the last fire time gives the same times; such a schedule has no fire
  times of its own, and `previous_before` refuses it.

Where this module is stricter than robfig (each of these is accepted by Kubernetes but is
almost certainly a mistake, and is reported instead): a schedule that can never fire
(`0 0 30 2 *`; robfig accepts it and the CronJob never runs), `*-5` (robfig ignores the
`-5`), empty list items (`1,,2`, `5,`), numbers with a sign (`+5`), and `@every` with a
zero or negative duration (robfig makes it 1s). Where robfig's walk has blind spots, this
module keeps to the rule above: robfig gives up when no fire time is found within five
years (a Feb 29 schedule near 2100), and in a zone whose offset changes by half an hour
(Australia/Lord_Howe) its hour-by-hour stepping can miss the first fire time after the
change.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from fractions import Fraction
from functools import cached_property
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "parse_schedule"]


class CronError(ValueError):
    """A schedule that cannot be used; the message says what is wrong and where."""


class _Problem(Exception):
    """What is wrong with part of a schedule; `parse_schedule` adds which schedule."""


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: dict[str, int]
    what: str
    note: str = ""


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (
    _Field("minute", 0, 59, {}, "a number"),
    _Field("hour", 0, 23, {}, "a number"),
    _Field("day-of-month", 1, 31, {}, "a number"),
    _Field(
        "month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTH_NAMES)}, "a month (1-12, JAN-DEC)"
    ),
    _Field(
        "day-of-week",
        0,
        6,
        {n: i for i, n in enumerate(_DAY_NAMES)},
        "a day (0-6, SUN-SAT)",
        " (0 = Sunday)",
    ),
)
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = "@every "
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years
_NUMBER = re.compile(r"[0-9]+")
_GO_DURATION = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}

_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_PROBE = 6 * 3600  # offset changes are looked for at this spacing, then bisected
_MAX_STEPS = 10_000  # far more than any real schedule needs (Feb 29 across 2100: ~400)
#: Zones whose UTC offset never changes (the tz database's Etc/ area and its aliases):
#: no offset change is looked for (registering 10,000 yearly schedules in UTC took 3 s).
_FIXED_ZONES = frozenset(
    {"UTC", "UCT", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich", "Universal", "Zulu"}
)


def parse_schedule(
    schedule: str, default_tz: str | tzinfo = "UTC", tz: str | None = None
) -> CronSchedule:
    """Parse a CronJob-style schedule (five fields, a descriptor, an optional zone prefix).

    The zone is the schedule's `CRON_TZ=`/`TZ=` prefix, else `tz` (e.g. a separate
    `timeZone` field), else `default_tz` (the operator's zone; a name, a `ZoneInfo` or
    `datetime.UTC`). A prefix and a different `tz` together are an error. Raises
    `CronError` naming the schedule, the field and the problem.
    """
    try:
        return _parse(schedule, default_tz, tz)
    except _Problem as problem:
        raise CronError(f'schedule "{schedule}": {problem}') from None


def _parse(schedule: str, default_tz: str | tzinfo, tz: str | None) -> CronSchedule:
    text = schedule
    zone: ZoneInfo | None = None
    if text.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, text = text.partition(" ")  # robfig splits at the first space too
        name = prefix.partition("=")[2]
        text = text.strip()
        if not text:
            raise _Problem(f'no schedule after "{prefix}"')
        zone = _zone(name)
        if tz is not None and tz != name:
            raise _Problem(f'time zone "{name}" in the schedule conflicts with time zone "{tz}"')
    elif tz is not None:
        zone = _zone(tz)
    if zone is None:
        zone = _default_zone(default_tz)
    if not text.strip():
        raise _Problem("empty schedule")

    every: timedelta | None = None
    if text.startswith("@"):
        expression = text
        if text.startswith(_EVERY):
            every = _parse_every(text[len(_EVERY) :])
            fields = ["0", "0", "*", "*", "*"]  # unused: an @every schedule has no calendar
        elif text in _DESCRIPTORS:
            fields = _DESCRIPTORS[text].split()
        else:
            raise _Problem(_unknown_descriptor(text))
    else:
        fields = text.split()
        if "=" in fields[0]:
            raise _Problem(f'unknown prefix "{fields[0]}" (use CRON_TZ=<zone> or TZ=<zone>)')
        if len(fields) != 5:
            raise _Problem(
                f"expected 5 fields, got {len(fields)} (minute hour day-of-month month day-of-week)"
            )
        expression = " ".join(fields)

    parsed = [_parse_field(value, spec) for value, spec in zip(fields, _FIELDS, strict=True)]
    (minutes, _), (hours, _), (doms, dom_star), (months, _), (dows, dow_star) = parsed
    if dow_star and not dom_star and not any(d <= _DAYS_IN_MONTH[m] for m in months for d in doms):
        raise _Problem(
            f'never fires: day-of-month "{fields[2]}" does not occur in month "{fields[3]}"'
        )
    return CronSchedule(
        expression=expression,
        tz=zone,
        minutes=minutes,
        hours=hours,
        days_of_month=doms,
        months=months,
        days_of_week=dows,
        day_of_month_star=dom_star,
        day_of_week_star=dow_star,
        every=every,
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _Problem(f'unknown time zone "{name}"') from None


def _default_zone(default_tz: str | tzinfo) -> ZoneInfo:
    if isinstance(default_tz, ZoneInfo):
        return default_tz
    if default_tz is UTC:
        return ZoneInfo("UTC")
    if isinstance(default_tz, str):
        try:
            return _zone(default_tz)
        except _Problem:
            raise CronError(f'unknown default time zone "{default_tz}"') from None
    raise TypeError(f"default_tz must be an IANA zone name or a ZoneInfo, not {default_tz!r}")


def _unknown_descriptor(text: str) -> str:
    known = ", ".join(_DESCRIPTORS) + ", @every <duration>"
    if text == _EVERY.strip():
        return '@every needs a duration, e.g. "@every 6h"'
    if text != text.strip() and _is_descriptor(text.strip()):
        return f'unexpected whitespace in descriptor "{text}"'
    if text.lower() in _DESCRIPTORS:
        return f'unknown descriptor "{text}" (descriptors are lower case: {text.lower()})'
    return f'unknown descriptor "{text}" (known: {known})'


def _is_descriptor(text: str) -> bool:
    return text in _DESCRIPTORS or text.startswith(_EVERY)


def _parse_every(text: str) -> timedelta:
    """A Go `time.ParseDuration` string, truncated to whole seconds, at least one second."""
    if not _GO_DURATION.fullmatch(text):
        raise _Problem(f'@every: "{text}" is not a duration (write it like 90m, 1h30m or 36h)')
    total = Fraction(0)
    for number, unit in _GO_DURATION_PART.findall(text):
        total += Fraction(number if number[0] != "." else "0" + number) * _GO_UNIT_NS[unit]
    if text.startswith("-") or total == 0:
        raise _Problem(f'@every: the duration "{text}" must be positive')
    if total >= 2**63:
        raise _Problem(f'@every: the duration "{text}" is too long')
    return timedelta(seconds=max(1, int(total) // 10**9))


def _parse_field(text: str, spec: _Field) -> tuple[frozenset[int], bool]:
    """The values a field allows and whether it carries robfig's star bit."""
    values: set[int] = set()
    star = False
    items = text.split(",")
    for item in items:
        try:
            if not item:
                raise _Problem("empty item in the list")
            start, end, step, item_star = _parse_item(item, spec)
        except _Problem as problem:
            where = f' (in "{item}")' if len(items) > 1 and item else ""
            raise _Problem(f'{spec.name} field "{text}": {problem}{where}') from None
        values.update(range(start, end + 1, step))
        star = star or item_star
    return frozenset(values), star


def _parse_item(item: str, spec: _Field) -> tuple[int, int, int, bool]:
    base, slash, step_text = item.partition("/")
    if "/" in step_text:
        raise _Problem('more than one "/"')
    star = base in ("*", "?")
    if star:
        start, end = spec.low, spec.high
    else:
        low_text, dash, high_text = base.partition("-")
        if low_text in ("*", "?"):
            raise _Problem(f'a range cannot start with "{low_text}"')
        if "-" in high_text:
            raise _Problem('more than one "-"')
        start = _parse_value(low_text, spec)
        end = _parse_value(high_text, spec) if dash else start
        if slash and not dash:
            end = spec.high  # "N/step" means "N-max/step"
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text):
            raise _Problem(f'step "{step_text}" is not a number')
        step = int(step_text)
        if step == 0:
            raise _Problem("step 0: a step must be at least 1")
        star = star and step == 1
    if start > end:
        raise _Problem(f'range "{base}" runs backwards ({start} is after {end})')
    return start, end, step, star


def _parse_value(text: str, spec: _Field) -> int:
    if not text:
        raise _Problem("a number is missing")
    named = spec.names.get(text.lower())
    if named is not None:
        return named
    if not _NUMBER.fullmatch(text):
        raise _Problem(f'"{text}" is not {spec.what}')
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise _Problem(f"value {value} out of range {spec.low}-{spec.high}{spec.note}")
    return value


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule in its time zone; build it with `parse_schedule`.

    `expression` is the schedule text without the zone prefix (fields separated by single
    spaces, descriptors as written): what goes in a CronJob's `spec.schedule`, with
    `tz.key` in its `spec.timeZone`. `days_of_week` counts from 0 = Sunday. The two
    `*_star` flags are robfig's star bits (see the module docstring). `every` is set for
    `@every` schedules, whose fire times depend only on the instant asked about; their
    field sets are placeholders.
    """

    expression: str
    tz: ZoneInfo
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    day_of_month_star: bool = False
    day_of_week_star: bool = False
    every: timedelta | None = None

    def __str__(self) -> str:
        """The schedule with its zone as a prefix; `parse_schedule` reads it back."""
        return f"CRON_TZ={self.tz.key} {self.expression}"

    def next_after(self, dt: datetime) -> datetime:
        """The first fire time strictly after `dt` (aware), in the schedule's zone."""
        _require_aware(dt)
        after = (dt - _EPOCH) // _SECOND
        if self.every is not None:
            delay = self.every // _SECOND
            return self._search(lambda: after + delay)
        return self._search(lambda: self._next_fire(after + 1))

    def previous_before(self, dt: datetime) -> datetime:
        """The last fire time strictly before `dt` (aware), in the schedule's zone.

        Raises `CronError` for `@every` schedules: their times count from whenever the
        schedule started, so chain `next_after` from the last known fire time instead.
        """
        _require_aware(dt)
        if self.every is not None:
            raise CronError(
                f'schedule "{self}": an @every schedule has no fire times of its own before '
                "a given time; they count from the last fire time"
            )
        before = -((_EPOCH - dt) // _SECOND) - 1
        return self._search(lambda: self._prev_fire(before))

    def fire_times(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every fire time `t` with `start < t <= end`, in order (as a CronJob catches up)."""
        fire = self.next_after(start)
        while fire <= end:
            yield fire
            fire = self.next_after(fire)

    # --- the search, in whole POSIX seconds ("instants") and wall-clock seconds ("walls")

    def _search(self, find: Callable[[], int]) -> datetime:
        try:
            return datetime.fromtimestamp(find(), self.tz)
        except (OverflowError, ValueError):
            raise CronError(f'schedule "{self}": no fire time between years 1 and 9999') from None

    def _offset(self, instant: int) -> int:
        offset = datetime.fromtimestamp(instant, self.tz).utcoffset()
        assert offset is not None
        return offset // _SECOND

    def _next_fire(self, lower: int) -> int:
        """The first fire instant >= `lower`.

        While the UTC offset stays the same, wall time is instant + offset, so the first
        matching wall time gives the first fire instant. If the offset changes before that
        instant, the wall clock jumped there (skipping or repeating wall times), so the
        search starts again from the change with the new offset.
        """
        start = lower
        for _ in range(_MAX_STEPS):
            offset = self._offset(start)
            candidate = self._next_wall(start + offset) - offset
            change = self._first_change(start, candidate, offset)
            if change is None:
                return candidate
            start = change  # the offset changed before the candidate: retry from there
        raise ValueError("no fire time found")

    def _prev_fire(self, upper: int) -> int:
        """The last fire instant <= `upper`, mirroring `_next_fire`."""
        end = upper
        for _ in range(_MAX_STEPS):
            offset = self._offset(end)
            candidate = self._prev_wall(end + offset) - offset
            change = self._last_change(candidate, end, offset)
            if change is None:
                return candidate
            end = change - 1
        raise ValueError("no fire time found")

    @cached_property
    def _fixed_offset(self) -> bool:
        return self.tz.key in _FIXED_ZONES or self.tz.key.startswith("Etc/")

    def _first_change(self, after: int, until: int, offset: int) -> int | None:
        """The first instant in (after, until] whose UTC offset is not `offset`, if any."""
        if self._fixed_offset:
            return None
        low = after
        while low < until:
            high = min(low + _PROBE, until)
            if self._offset(high) != offset:
                while high - low > 1:
                    middle = (low + high) // 2
                    if self._offset(middle) == offset:
                        low = middle
                    else:
                        high = middle
                return high
            low = high
        return None

    def _last_change(self, after: int, until: int, offset: int) -> int | None:
        """Where the stretch of `offset` that ends at `until` begins, if after `after`."""
        if self._fixed_offset:
            return None
        high = until
        while high > after:
            low = max(high - _PROBE, after)
            if self._offset(low) != offset:
                while high - low > 1:
                    middle = (low + high) // 2
                    if self._offset(middle) == offset:
                        high = middle
                    else:
                        low = middle
                return high
            high = low
        return None

    def _next_wall(self, wall: int) -> int:
        """The first matching wall-clock minute at or after `wall` (no time zone involved)."""
        start = _NAIVE_EPOCH + timedelta(minutes=-(-wall // 60))
        day, hour, minute = start.date(), start.hour, start.minute
        for _ in range(_MAX_STEPS):
            if day.month not in self.months:
                day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            else:
                if self._day_matches(day):
                    time_of_day = self._first_time(hour, minute)
                    if time_of_day is not None:
                        return _wall(day, *time_of_day)
                day += timedelta(days=1)
            hour = minute = 0
        raise ValueError("no fire time found")

    def _prev_wall(self, wall: int) -> int:
        """The last matching wall-clock minute at or before `wall`."""
        start = _NAIVE_EPOCH + timedelta(minutes=wall // 60)
        day, hour, minute = start.date(), start.hour, start.minute
        for _ in range(_MAX_STEPS):
            if day.month not in self.months:
                day = day.replace(day=1) - timedelta(days=1)
            else:
                if self._day_matches(day):
                    time_of_day = self._last_time(hour, minute)
                    if time_of_day is not None:
                        return _wall(day, *time_of_day)
                day -= timedelta(days=1)
            hour, minute = 23, 59
        raise ValueError("no fire time found")

    def _day_matches(self, day: date) -> bool:
        in_month = day.day in self.days_of_month
        in_week = day.isoweekday() % 7 in self.days_of_week
        if self.day_of_month_star or self.day_of_week_star:
            return in_month and in_week
        return in_month or in_week

    def _first_time(self, hour: int, minute: int) -> tuple[int, int] | None:
        hours, minutes = self._hour_list, self._minute_list
        i = bisect_left(hours, hour)
        if i < len(hours) and hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes):
                return hour, minutes[j]
            i += 1
        return (hours[i], minutes[0]) if i < len(hours) else None

    def _last_time(self, hour: int, minute: int) -> tuple[int, int] | None:
        hours, minutes = self._hour_list, self._minute_list
        i = bisect_right(hours, hour) - 1
        if i >= 0 and hours[i] == hour:
            j = bisect_right(minutes, minute) - 1
            if j >= 0:
                return hour, minutes[j]
            i -= 1
        return (hours[i], minutes[-1]) if i >= 0 else None

    @cached_property
    def _hour_list(self) -> list[int]:
        return sorted(self.hours)

    @cached_property
    def _minute_list(self) -> list[int]:
        return sorted(self.minutes)


def _wall(day: date, hour: int, minute: int) -> int:
    return (datetime(day.year, day.month, day.day, hour, minute) - _NAIVE_EPOCH) // _SECOND


def _require_aware(dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"a schedule needs an aware datetime, got naive {dt.isoformat()}")
