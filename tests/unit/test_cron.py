"""Tests for stash.cron: schedules mean what a Kubernetes CronJob makes of them.

Expected times come from stash-api.md §5.2.1, from robfig/cron v3's own test table
(spec_test.go; its 6-field specs appear here without the seconds field) and from a
minute-by-minute reference search that shares no code with the module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stash.cron import CronError, parse_schedule

UTC_ZONE = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = UTC_ZONE) -> datetime:
    """Wall-clock `text` in `zone` (the first run of a time that happens twice)."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def fires(schedule: str, start: datetime, end: datetime, zone: str = "UTC") -> list[str]:
    return [t.isoformat() for t in parse_schedule(schedule, zone).fire_times(start, end)]


def fires_in(zone: str, schedule: str, start: str, end: str) -> list[str]:
    """Fire times of `schedule` in `zone` between two wall-clock times there."""
    return fires(schedule, at(start, ZoneInfo(zone)), at(end, ZoneInfo(zone)), zone)


def fire_days(schedule: str, start: str, end: str) -> list[str]:
    """The dates (MM-DD) on which `schedule` fires between two UTC times."""
    return [t.strftime("%m-%d") for t in parse_schedule(schedule).fire_times(at(start), at(end))]


# --- what the fields mean -------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "field", "values"),
    [
        ("1-5 * * * *", "minutes", set(range(1, 6))),
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("3-59/15 * * * *", "minutes", {3, 18, 33, 48}),
        ("5/15 * * * *", "minutes", {5, 20, 35, 50}),  # N/step means N-max/step
        ("*/60 * * * *", "minutes", {0}),  # accepted by robfig: the hour's minute 0
        ("0,30 8-17/3 * * *", "hours", {8, 11, 14, 17}),
        ("05 7 * * *", "minutes", {5}),
        ("0 ? * * *", "hours", set(range(24))),
        ("0 0 1-3,31 * *", "days_of_month", {1, 2, 3, 31}),
        ("0 0 * JAN-MAR,dec *", "months", {1, 2, 3, 12}),
        ("0 0 * Jul/2 *", "months", {7, 9, 11}),
        ("0 0 * * MON-FRI", "days_of_week", {1, 2, 3, 4, 5}),
        ("0 0 * * mon-fri", "days_of_week", {1, 2, 3, 4, 5}),
        ("0 0 * * Sat,sun", "days_of_week", {0, 6}),
        ("0 0 * * 0", "days_of_week", {0}),
        ("0 0 * * SUN/2", "days_of_week", {0, 2, 4, 6}),
        ("0 0 * * ?", "days_of_week", set(range(7))),
    ],
)
def test_field_values(schedule: str, field: str, values: set[int]) -> None:
    assert getattr(parse_schedule(schedule), field) == values


@pytest.mark.parametrize(
    ("schedule", "dom_star", "dow_star"),
    [
        ("0 0 * * *", True, True),
        ("0 0 ? * ?", True, True),
        ("0 0 */1 * *", True, True),  # a step of 1 keeps robfig's star bit
        ("0 0 */2 * MON", False, False),  # a larger step clears it
        ("0 0 1-31 * 0-6", False, False),
        ("0 0 1,* * MON", True, False),
    ],
)
def test_star_bits(schedule: str, dom_star: bool, dow_star: bool) -> None:
    parsed = parse_schedule(schedule)
    assert (parsed.day_of_month_star, parsed.day_of_week_star) == (dom_star, dow_star)


@pytest.mark.parametrize(
    ("schedule", "dates"),
    [
        # Both day fields restricted: either may match (2024-01-01 is a Monday).
        ("0 0 1 * MON", ["01-01", "01-08", "01-15", "01-22", "01-29", "02-01", "02-05"]),
        ("0 0 15 * FRI", ["01-05", "01-12", "01-15", "01-19", "01-26", "02-02"]),
        ("0 0 */10 * SUN", ["01-01", "01-07", "01-11", "01-14", "01-21", "01-28", "01-31",
                            "02-01", "02-04"]),
        ("0 0 1-31 * MON", [f"01-{d:02}" for d in range(1, 32)] +
                           [f"02-{d:02}" for d in range(1, 8)]),
        # One day field is * or ? (or */1): both must match, so only the other one counts.
        ("0 0 * * MON", ["01-01", "01-08", "01-15", "01-22", "01-29", "02-05"]),
        ("0 0 ? * MON", ["01-01", "01-08", "01-15", "01-22", "01-29", "02-05"]),
        ("0 0 */1 * MON", ["01-01", "01-08", "01-15", "01-22", "01-29", "02-05"]),
        ("0 0 1 * *", ["01-01", "02-01"]),
        ("0 0 1 * ?", ["01-01", "02-01"]),
        ("0 0 1,15 * *", ["01-01", "01-15", "02-01"]),
    ],
)  # fmt: skip
def test_day_of_month_and_day_of_week(schedule: str, dates: list[str]) -> None:
    assert fire_days(schedule, "2023-12-31 23:59", "2024-02-07 23:59") == dates


def test_zero_is_sunday() -> None:
    sunday = parse_schedule("0 12 * * 0").next_after(at("2024-01-01 00:00"))
    assert sunday.isoformat() == "2024-01-07T12:00:00+00:00"
    assert sunday.strftime("%A") == "Sunday"


@pytest.mark.parametrize(
    ("descriptor", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_descriptors(descriptor: str, same_as: str) -> None:
    start, end = at("2023-06-15 10:30"), at("2025-06-15 10:30")
    expected = fires(same_as, start, end)
    assert expected
    assert fires(descriptor, start, end) == expected
    assert parse_schedule(descriptor).expression == descriptor


@pytest.mark.parametrize(
    ("now", "schedule", "expected"),
    [
        ("2012-07-09 14:45", "0/15 * * * *", "2012-07-09T15:00:00"),
        ("2012-07-09 14:59:59", "0/15 * * * *", "2012-07-09T15:00:00"),
        ("2012-07-09 15:45", "20-35/15 * * * *", "2012-07-09T16:20:00"),
        ("2012-07-09 23:46", "*/15 * * * *", "2012-07-10T00:00:00"),
        ("2012-07-09 23:45", "20-35/15 * * * *", "2012-07-10T00:20:00"),
        ("2012-07-09 23:35", "0 0 9 Apr-Oct ?", "2012-08-09T00:00:00"),
        ("2012-07-09 23:35", "0 0 */5 Apr,Aug,Oct Mon", "2012-08-01T00:00:00"),
        ("2012-07-09 23:35", "0 0 */5 Oct Mon", "2012-10-01T00:00:00"),
        ("2012-07-09 23:35", "0 0 * Feb Mon", "2013-02-04T00:00:00"),
        ("2012-07-09 23:35", "0 0 * Feb Mon/2", "2013-02-01T00:00:00"),
        ("2012-12-31 23:59:45", "* * * * *", "2013-01-01T00:00:00"),
        ("2012-07-09 23:35", "0 0 29 Feb ?", "2016-02-29T00:00:00"),
    ],
)
def test_robfig_next_table(now: str, schedule: str, expected: str) -> None:
    assert parse_schedule(schedule).next_after(at(now)) == at(expected)


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("", 'schedule "": empty schedule'),
        ("0 0 * * * *", 'schedule "0 0 * * * *": expected 5 fields, got 6 '
                        "(minute hour day-of-month month day-of-week)"),
        ("0 0 * *", 'schedule "0 0 * *": expected 5 fields, got 4 '
                    "(minute hour day-of-month month day-of-week)"),
        ("*/5 * * 13 *", 'schedule "*/5 * * 13 *": month field "13": value 13 out of range 1-12'),
        ("0 0 * * 7", 'schedule "0 0 * * 7": day-of-week field "7": '
                      "value 7 out of range 0-6 (0 = Sunday)"),
        ("0 0 * * 1-7", 'schedule "0 0 * * 1-7": day-of-week field "1-7": '
                        "value 7 out of range 0-6 (0 = Sunday)"),
        ("60 * * * *", 'schedule "60 * * * *": minute field "60": value 60 out of range 0-59'),
        ("0 24 * * *", 'schedule "0 24 * * *": hour field "24": value 24 out of range 0-23'),
        ("0 0 0 * *", 'schedule "0 0 0 * *": day-of-month field "0": value 0 out of range 1-31'),
        ("0 0 * * MONDAY", 'schedule "0 0 * * MONDAY": day-of-week field "MONDAY": '
                           '"MONDAY" is not a day (0-6, SUN-SAT)'),
        ("0 0 * JAN-FOO *", 'schedule "0 0 * JAN-FOO *": month field "JAN-FOO": '
                            '"FOO" is not a month (1-12, JAN-DEC)'),
        ("MON * * * *", 'schedule "MON * * * *": minute field "MON": "MON" is not a number'),
        ("+5 * * * *", 'schedule "+5 * * * *": minute field "+5": "+5" is not a number'),
        ("5-1 * * * *", 'schedule "5-1 * * * *": minute field "5-1": '
                        'range "5-1" runs backwards (5 is after 1)'),
        ("1-2-3 * * * *", 'schedule "1-2-3 * * * *": minute field "1-2-3": more than one "-"'),
        ("*/0 * * * *", 'schedule "*/0 * * * *": minute field "*/0": '
                        "step 0: a step must be at least 1"),
        ("0 */x * * *", 'schedule "0 */x * * *": hour field "*/x": step "x" is not a number'),
        ("0 0 * * 1/2/3", 'schedule "0 0 * * 1/2/3": day-of-week field "1/2/3": '
                          'more than one "/"'),
        ("1,,2 * * * *", 'schedule "1,,2 * * * *": minute field "1,,2": empty item in the list'),
        ("0,*-5 * * * *", 'schedule "0,*-5 * * * *": minute field "0,*-5": '
                          'a range cannot start with "*" (in "*-5")'),
        ("0 0 30 2 *", 'schedule "0 0 30 2 *": never fires: '
                       'day-of-month "30" does not occur in month "2"'),
        ("0 0 31 APR,jun *", 'schedule "0 0 31 APR,jun *": never fires: '
                             'day-of-month "31" does not occur in month "APR,jun"'),
        ("@reboot", 'schedule "@reboot": unknown descriptor "@reboot" (known: @yearly, '
                    "@annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration>)"),
        ("@Daily", 'schedule "@Daily": unknown descriptor "@Daily" '
                   "(descriptors are lower case: @daily)"),
        ("@daily ", 'schedule "@daily ": unexpected whitespace in descriptor "@daily "'),
        ("@every", 'schedule "@every": @every needs a duration, e.g. "@every 6h"'),
        ("@every 1x", 'schedule "@every 1x": @every: "1x" is not a duration '
                      "(write it like 90m, 1h30m or 36h)"),
        ("@every 0s", 'schedule "@every 0s": @every: the duration "0s" must be positive'),
        ("@every -1h", 'schedule "@every -1h": @every: the duration "-1h" must be positive'),
        ("CRON_TZ=Mars/Base 0 * * * *",
         'schedule "CRON_TZ=Mars/Base 0 * * * *": unknown time zone "Mars/Base"'),
        ("TZ=UTC", 'schedule "TZ=UTC": no schedule after "TZ=UTC"'),
        ("cron_tz=UTC 0 * * * *", 'schedule "cron_tz=UTC 0 * * * *": '
                                  'unknown prefix "cron_tz=UTC" (use CRON_TZ=<zone> or TZ=<zone>)'),
    ],
)  # fmt: skip
def test_errors_name_the_problem(schedule: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_schedule(schedule)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_a_zone_prefix_and_a_different_zone_field_conflict() -> None:
    with pytest.raises(CronError) as caught:
        parse_schedule("CRON_TZ=Europe/Berlin 0 2 * * *", tz="UTC")
    assert str(caught.value) == (
        'schedule "CRON_TZ=Europe/Berlin 0 2 * * *": time zone "Europe/Berlin" in the '
        'schedule conflicts with time zone "UTC"'
    )


def test_unknown_zone_field_and_default() -> None:
    with pytest.raises(CronError) as caught:
        parse_schedule("0 2 * * *", tz="Nowhere")
    assert str(caught.value) == 'schedule "0 2 * * *": unknown time zone "Nowhere"'
    with pytest.raises(CronError) as caught:
        parse_schedule("0 2 * * *", default_tz="Nowhere")
    assert str(caught.value) == 'unknown default time zone "Nowhere"'
    with pytest.raises(TypeError):
        parse_schedule("0 2 * * *", default_tz=timezone(timedelta(hours=2)))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        parse_schedule("@daily").next_after(datetime(2024, 1, 1))


# --- time zones -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        "CRON_TZ=Europe/Berlin 0 2 * * *",
        "TZ=Europe/Berlin 0 2 * * *",
        "TZ=Europe/Berlin  0 2\t* * *  ",  # robfig trims after the zone and splits on any space
    ],
)
def test_zone_prefix(schedule: str) -> None:
    parsed = parse_schedule(schedule, default_tz="America/New_York")
    assert parsed.tz == BERLIN
    assert parsed.expression == "0 2 * * *"
    assert str(parsed) == "CRON_TZ=Europe/Berlin 0 2 * * *"
    assert parsed.next_after(at("2024-01-10 12:00")).isoformat() == "2024-01-11T02:00:00+01:00"


def test_zone_field_default_and_precedence() -> None:
    assert parse_schedule("0 2 * * *", tz="Europe/Berlin").tz == BERLIN
    assert parse_schedule("0 2 * * *", default_tz="Europe/Berlin").tz == BERLIN
    assert parse_schedule("0 2 * * *", default_tz=BERLIN).tz == BERLIN
    assert parse_schedule("0 2 * * *", default_tz=UTC).tz == UTC_ZONE
    assert parse_schedule("0 2 * * *").tz == UTC_ZONE
    assert parse_schedule("0 2 * * *", default_tz="UTC", tz="Europe/Berlin").tz == BERLIN
    same = parse_schedule("TZ=Europe/Berlin @daily", tz="Europe/Berlin")
    assert str(same) == "CRON_TZ=Europe/Berlin @daily"


def test_str_reads_back_to_the_same_schedule() -> None:
    for text in ["0 0 1 * MON", "@weekly", "TZ=America/New_York */5 9-17 * * fri", "@every 90m"]:
        parsed = parse_schedule(text, default_tz="Europe/Berlin")
        assert parse_schedule(str(parsed)) == parsed


def test_fire_times_are_in_the_schedule_zone_whatever_the_input_zone() -> None:
    schedule = parse_schedule("CRON_TZ=America/New_York 0 9 * * *")
    fired = schedule.next_after(at("2024-06-01 06:00", BERLIN))
    assert fired.tzinfo == NEW_YORK
    assert fired.isoformat() == "2024-06-01T09:00:00-04:00"


# --- daylight saving time ---------------------------------------------------------------


def test_new_york_spring_forward_skips_missing_wall_times() -> None:
    # 2024-03-10: 02:00 EST becomes 03:00 EDT.
    ny = "America/New_York"
    assert fires_in(ny, "0 * * * *", "2024-03-10 00:30", "2024-03-10 04:30") == [
        "2024-03-10T01:00:00-05:00",
        "2024-03-10T03:00:00-04:00",
        "2024-03-10T04:00:00-04:00",
    ]
    assert fires_in(ny, "*/30 * * * *", "2024-03-10 01:00", "2024-03-10 03:00") == [
        "2024-03-10T01:30:00-05:00",
        "2024-03-10T03:00:00-04:00",
    ]
    assert fires_in(ny, "30 2 * * *", "2024-03-09 03:00", "2024-03-12 00:00") == [
        "2024-03-11T02:30:00-04:00"
    ]


def test_new_york_fall_back_fires_repeated_wall_times_twice() -> None:
    # 2024-11-03: 02:00 EDT becomes 01:00 EST, so 01:00-01:59 happens twice.
    ny = "America/New_York"
    assert fires_in(ny, "0 * * * *", "2024-11-03 00:30", "2024-11-03 02:30") == [
        "2024-11-03T01:00:00-04:00",
        "2024-11-03T01:00:00-05:00",
        "2024-11-03T02:00:00-05:00",
    ]
    assert fires_in(ny, "30 1 * * *", "2024-11-02 12:00", "2024-11-04 12:00") == [
        "2024-11-03T01:30:00-04:00",
        "2024-11-03T01:30:00-05:00",
        "2024-11-04T01:30:00-05:00",
    ]


def test_berlin_spring_forward_skips_missing_wall_times() -> None:
    # 2024-03-31: 02:00 CET becomes 03:00 CEST.
    assert fires_in("Europe/Berlin", "0 * * * *", "2024-03-31 00:30", "2024-03-31 03:30") == [
        "2024-03-31T01:00:00+01:00",
        "2024-03-31T03:00:00+02:00",
    ]
    assert fires_in("Europe/Berlin", "30 2 * * *", "2024-03-30 12:00", "2024-04-01 12:00") == [
        "2024-04-01T02:30:00+02:00"
    ]


def test_berlin_fall_back_fires_repeated_wall_times_twice() -> None:
    # 2024-10-27: 03:00 CEST becomes 02:00 CET (Kubernetes issue #121594).
    assert fires_in("Europe/Berlin", "0 2 * * *", "2024-10-26 12:00", "2024-10-28 12:00") == [
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-28T02:00:00+01:00",
    ]


def test_previous_before_across_daylight_saving_changes() -> None:
    fall = parse_schedule("30 2 * * *", "Europe/Berlin")
    last = fall.previous_before(at("2024-10-28 00:00", BERLIN))
    assert last.isoformat() == "2024-10-27T02:30:00+01:00"
    last = fall.previous_before(last)
    assert last.isoformat() == "2024-10-27T02:30:00+02:00"
    assert fall.previous_before(last).isoformat() == "2024-10-26T02:30:00+02:00"
    spring = parse_schedule("30 2 * * *", "America/New_York")
    before = spring.previous_before(at("2024-03-11 00:00", NEW_YORK))
    assert before.isoformat() == "2024-03-09T02:30:00-05:00"


@pytest.mark.parametrize(
    ("now", "schedule", "expected"),
    [
        ("2012-03-11T00:00:00-05:00", "0 * * * ?", "2012-03-11T01:00:00-05:00"),
        ("2012-03-11T01:00:00-05:00", "0 * * * ?", "2012-03-11T03:00:00-04:00"),
        ("2012-03-11T03:00:00-04:00", "0 * * * ?", "2012-03-11T04:00:00-04:00"),
        ("2012-03-11T00:00:00-05:00", "0 1 * * ?", "2012-03-11T01:00:00-05:00"),
        ("2012-03-11T01:00:00-05:00", "0 1 * * ?", "2012-03-12T01:00:00-04:00"),
        ("2012-03-11T00:00:00-05:00", "0 2 * * ?", "2012-03-12T02:00:00-04:00"),
        ("2012-03-11T00:00:00-05:00", "30 2 11 Mar ?", "2013-03-11T02:30:00-04:00"),
        ("2012-11-04T00:00:00-04:00", "30 2 04 Nov ?", "2012-11-04T02:30:00-05:00"),
        ("2012-11-04T01:45:00-04:00", "30 1 04 Nov ?", "2012-11-04T01:30:00-05:00"),
        ("2012-11-04T00:00:00-04:00", "0 * * * ?", "2012-11-04T01:00:00-04:00"),
        ("2012-11-04T01:00:00-04:00", "0 * * * ?", "2012-11-04T01:00:00-05:00"),
        ("2012-11-04T01:00:00-05:00", "0 * * * ?", "2012-11-04T02:00:00-05:00"),
        ("2012-11-04T00:00:00-04:00", "0 1 * * ?", "2012-11-04T01:00:00-04:00"),
        ("2012-11-04T01:00:00-04:00", "0 1 * * ?", "2012-11-04T01:00:00-05:00"),
        ("2012-11-04T01:00:00-05:00", "0 1 * * ?", "2012-11-05T01:00:00-05:00"),
        ("2012-11-04T00:00:00-04:00", "0 2 * * ?", "2012-11-04T02:00:00-05:00"),
        ("2012-11-04T02:00:00-05:00", "0 2 * * ?", "2012-11-05T02:00:00-05:00"),
        ("2012-11-04T00:00:00-04:00", "0 3 * * ?", "2012-11-04T03:00:00-05:00"),
        ("2012-11-04T03:00:00-05:00", "0 3 * * ?", "2012-11-05T03:00:00-05:00"),
    ],
)
def test_robfig_daylight_saving_table(now: str, schedule: str, expected: str) -> None:
    fired = parse_schedule(f"TZ=America/New_York {schedule}").next_after(
        datetime.fromisoformat(now)
    )
    assert fired.isoformat() == expected


def test_midnight_that_does_not_exist() -> None:
    # Sao Paulo 2018-11-04: 00:00 -03 became 01:00 -02; robfig starts that day at 01:00.
    daily = parse_schedule("0 * 4 11 *", "America/Sao_Paulo")
    assert daily.next_after(at("2018-11-03 23:30", ZoneInfo("America/Sao_Paulo"))).isoformat() == (
        "2018-11-04T01:00:00-02:00"
    )


def test_half_hour_offset_change() -> None:
    # Lord Howe 2024-04-07: 02:00 +11 became 01:30 +10:30. 02:00 then happens once, at
    # +10:30; robfig's hour-by-hour walk would step over it, this module does not.
    lord_howe = "Australia/Lord_Howe"
    assert fires_in(lord_howe, "0 2 * * *", "2024-04-07 00:00", "2024-04-08 00:00") == [
        "2024-04-07T02:00:00+10:30"
    ]
    assert fires_in(lord_howe, "45 1 * * *", "2024-04-07 00:00", "2024-04-08 00:00") == [
        "2024-04-07T01:45:00+11:00",
        "2024-04-07T01:45:00+10:30",
    ]


# --- calendar edges ---------------------------------------------------------------------


def test_leap_days() -> None:
    leap = parse_schedule("0 0 29 2 *")
    assert leap.next_after(at("2023-03-01 00:00")) == at("2024-02-29 00:00")
    assert leap.next_after(at("2024-02-29 00:00")) == at("2028-02-29 00:00")
    # 2100 is not a leap year; robfig gives up after five years, we do not.
    assert leap.next_after(at("2096-03-01 00:00")) == at("2104-02-29 00:00")
    assert leap.previous_before(at("2104-01-01 00:00")) == at("2096-02-29 00:00")


def test_year_end() -> None:
    assert fires("*/15 * * * *", at("2023-12-31 23:40"), at("2024-01-01 00:15")) == [
        "2023-12-31T23:45:00+00:00",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:15:00+00:00",
    ]
    assert fires("59 23 31 12 *", at("2023-01-01 00:00"), at("2025-12-31 23:59")) == [
        "2023-12-31T23:59:00+00:00",
        "2024-12-31T23:59:00+00:00",
        "2025-12-31T23:59:00+00:00",
    ]
    new_year = at("2024-01-01 00:00")
    assert parse_schedule("@yearly").previous_before(new_year) == at("2023-01-01 00:00")


def test_next_after_is_strict_and_ignores_sub_minute_parts() -> None:
    hourly = parse_schedule("@hourly")
    assert hourly.next_after(at("2024-05-05 10:00")) == at("2024-05-05 11:00")
    assert hourly.next_after(at("2024-05-05 09:59:59.999999")) == at("2024-05-05 10:00")
    assert hourly.previous_before(at("2024-05-05 10:00")) == at("2024-05-05 09:00")
    assert hourly.previous_before(at("2024-05-05 10:00:00.000001")) == at("2024-05-05 10:00")


def test_fire_times_is_start_exclusive_end_inclusive() -> None:
    assert fires("0 */6 * * *", at("2024-01-01 00:00"), at("2024-01-01 18:00")) == [
        "2024-01-01T06:00:00+00:00",
        "2024-01-01T12:00:00+00:00",
        "2024-01-01T18:00:00+00:00",
    ]


# --- @every -----------------------------------------------------------------------------


def test_every_counts_from_the_time_asked_about() -> None:
    every = parse_schedule("@every 1h30m", "Europe/Berlin")
    assert every.every == timedelta(hours=1, minutes=30)
    start = at("2024-01-01 10:07:30.5")
    assert every.next_after(start).isoformat() == "2024-01-01T12:37:30+01:00"
    assert fires("@every 90m", start, at("2024-01-01 14:00")) == [
        "2024-01-01T11:37:30+00:00",
        "2024-01-01T13:07:30+00:00",
    ]
    with pytest.raises(CronError, match="no fire times of its own"):
        every.previous_before(start)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("36h", 129600), ("1.5h", 5400), (".5m", 30), ("1h0m10s", 3610), ("500ms", 1), ("2.9s", 2)],
)
def test_every_reads_go_durations_like_robfig(text: str, seconds: int) -> None:
    assert parse_schedule(f"@every {text}").every == timedelta(seconds=seconds)


# --- property: the same answers as looking at every minute ------------------------------

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Sao_Paulo",
         "Antarctica/Casey", "Pacific/Apia", "Asia/Kolkata"]  # fmt: skip
TRANSITIONS = [  # offset changes: 1h both ways, 30 min, midnight, 3h back, a skipped day
    datetime(2024, 3, 10, 7, tzinfo=UTC),
    datetime(2024, 11, 3, 6, tzinfo=UTC),
    datetime(2024, 3, 31, 1, tzinfo=UTC),
    datetime(2024, 10, 27, 1, tzinfo=UTC),
    datetime(2024, 4, 6, 15, tzinfo=UTC),
    datetime(2024, 10, 5, 15, 30, tzinfo=UTC),
    datetime(2018, 11, 4, 3, tzinfo=UTC),
    datetime(2019, 2, 17, 2, tzinfo=UTC),
    datetime(2018, 3, 10, 17, tzinfo=UTC),
    datetime(2011, 12, 30, 10, tzinfo=UTC),
]
WINDOW = timedelta(days=2)
DAY_NAMES = ["SUN", "mon", "Tue", "wed", "THU", "fri", "Sat"]
MONTH_NAMES = ["jan", "FEB", "Mar", "apr", "MAY", "jun", "Jul", "aug", "SEP", "oct", "Nov", "dec"]


@st.composite
def cron_field(draw: st.DrawFn, low: int, high: int, names: list[str] | None = None):  # type: ignore[no-untyped-def]
    """A field's text, the values it allows and whether it is a star (worked out here)."""

    def show(value: int) -> str:
        if names and draw(st.booleans()):
            return names[value - low]
        return str(value)

    kind = draw(st.sampled_from(["star", "star", "star-step", "list"]))
    if kind == "star":
        return draw(st.sampled_from(["*", "?"])), set(range(low, high + 1)), True
    if kind == "star-step":
        step = draw(st.integers(1, 4))
        return f"*/{step}", set(range(low, high + 1, step)), step == 1
    texts, values = [], set()
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(low, high))
        end = draw(st.integers(start, high))
        step = draw(st.integers(1, 3))
        shape = draw(st.sampled_from(["single", "range", "range-step", "single-step"]))
        if shape == "single":
            texts.append(show(start))
            values.add(start)
        elif shape == "range":
            texts.append(f"{show(start)}-{show(end)}")
            values.update(range(start, end + 1))
        elif shape == "range-step":
            texts.append(f"{show(start)}-{show(end)}/{step}")
            values.update(range(start, end + 1, step))
        else:
            texts.append(f"{show(start)}/{step}")
            values.update(range(start, high + 1, step))
    return ",".join(texts), values, False


def reference_matches(local: datetime, fields: list[tuple[str, set[int], bool]]) -> bool:
    minute, hour, dom, month, dow = fields
    if local.minute not in minute[1] or local.hour not in hour[1] or local.month not in month[1]:
        return False
    in_month, in_week = local.day in dom[1], (local.weekday() + 1) % 7 in dow[1]
    return in_month and in_week if dom[2] or dow[2] else in_month or in_week


def reference_search(
    zone: ZoneInfo, fields: list[tuple[str, set[int], bool]], start: datetime, forward: bool
) -> datetime | None:
    """Look at every whole UTC minute within WINDOW of `start` (strictly after or before)."""
    minute = timedelta(minutes=1)
    if forward:
        t = start.astimezone(UTC).replace(second=0, microsecond=0) + minute
    else:
        t = start.astimezone(UTC).replace(second=0, microsecond=0)
        if t >= start:
            t -= minute
    for _ in range(int(WINDOW / minute)):
        local = t.astimezone(zone)
        if reference_matches(local, fields):
            return local
        t = t + minute if forward else t - minute
    return None


@settings(max_examples=80, deadline=None)
@given(
    zone_name=st.sampled_from(ZONES),
    base=st.one_of(
        st.sampled_from(TRANSITIONS),
        st.datetimes(datetime(2010, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    ),
    shift=st.integers(-2 * 86400, 86400),
    micro=st.integers(0, 999_999),
    minute=cron_field(0, 59),
    hour=cron_field(0, 23),
    dom=cron_field(1, 31),
    month=cron_field(1, 12, MONTH_NAMES),
    dow=cron_field(0, 6, DAY_NAMES),
    forward=st.booleans(),
)
def test_matches_a_minute_by_minute_search(  # type: ignore[no-untyped-def]
    zone_name, base, shift, micro, minute, hour, dom, month, dow, forward
) -> None:
    fields = [minute, hour, dom, month, dow]
    text = " ".join(f[0] for f in fields)
    try:
        schedule = parse_schedule(text, zone_name)
    except CronError as error:
        assert "never fires" in str(error)
        return
    assert [schedule.minutes, schedule.hours, schedule.days_of_month, schedule.months,
            schedule.days_of_week] == [f[1] for f in fields]  # fmt: skip
    zone = ZoneInfo(zone_name)
    start = base + timedelta(seconds=shift, microseconds=micro)
    expected = reference_search(zone, fields, start, forward)
    got = schedule.next_after(start) if forward else schedule.previous_before(start)
    if expected is not None:
        assert got.isoformat() == expected.isoformat()
        assert got.utcoffset() == expected.utcoffset()
    elif forward:
        assert got > start + WINDOW - timedelta(minutes=1)
    else:
        assert got < start - WINDOW + timedelta(minutes=1)
