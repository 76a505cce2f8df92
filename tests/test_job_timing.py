"""When a job is due: cron in a time zone (daylight saving included), intervals, catch-up counts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_mlops.jobs.timing import Schedule, ScheduleError, parse_every

BERLIN = ZoneInfo("Europe/Berlin")


def stamp(*parts: int, zone: ZoneInfo = BERLIN) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()


def local(moment: float, zone: ZoneInfo = BERLIN) -> tuple[int, ...]:
    when = datetime.fromtimestamp(moment, zone)
    return (when.month, when.day, when.hour, when.minute)


def test_a_nightly_cron_runs_at_02_00_local_time_across_daylight_saving() -> None:
    nightly = Schedule.of(cron="0 2 * * *", tz="Europe/Berlin")
    # 2026-03-29: clocks go 02:00 -> 03:00 in Berlin; 02:00 does not exist that day
    first = nightly.next_after(stamp(2026, 3, 28, 12, 0), 0)
    second = nightly.next_after(first, 0)
    third = nightly.next_after(second, 0)
    assert local(first)[:2] == (3, 29) and local(first)[2] == 3  # the first time after it
    assert local(second) == (3, 30, 2, 0) and local(third) == (3, 31, 2, 0)
    assert third - second == 86400
    # October: 02:00 comes once (the second 02:00-03:00 hour is not run again)
    autumn = nightly.next_after(stamp(2026, 10, 24, 12, 0), 0)
    assert local(autumn) == (10, 25, 2, 0)
    assert local(nightly.next_after(autumn, 0)) == (10, 26, 2, 0)


def test_the_latest_slot_counts_a_slot_exactly_now_and_none_before_the_anchor() -> None:
    hourly = Schedule.of(cron="0 * * * *")
    now = stamp(2026, 12, 6, 10, 0, zone=ZoneInfo("UTC"))
    assert hourly.latest(now, 0) == now
    assert hourly.latest(now + 59, 0) == now
    assert hourly.latest(now + 59, now) is None  # made at 10:00: its first slot is 11:00
    assert hourly.slots_between(now - 3 * 3600, now) == 3


def test_interval_slots_count_from_the_jobs_making() -> None:
    every = Schedule.of(every="15m")
    made = 1_000_000.0
    assert every.next_after(made, made) == made + 900
    assert every.latest(made + 899, made) is None
    assert every.latest(made + 3 * 900 + 5, made) == made + 2700
    assert every.slots_between(made, made + 2700) == 3
    assert every.describe() == "every 15m"
    assert Schedule.of(every=90).describe() == "every 90s"


@given(st.floats(min_value=0.5, max_value=1e6), st.floats(min_value=0, max_value=1e8))
def test_an_interval_has_its_latest_slot_at_or_before_now_and_its_next_after(
        every: float, offset: float) -> None:
    schedule, anchor = Schedule(every=every), 1.6e9
    now = anchor + offset
    latest, following = schedule.latest(now, anchor), schedule.next_after(now, anchor)
    assert now < following <= now + every + 1e-6
    if latest is not None:
        assert anchor < latest <= now and following - latest == pytest.approx(every)


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("15m", 900), ("1h", 3600),
                                               ("2d", 172800), ("90", 90), (" 1.5H ", 5400)])
def test_intervals_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize(("settings", "message"), [
    ({"cron": "0 2 * *"}, "has 4 field(s)"),
    ({"cron": "0 2 30 2 * *"}, "has 6 field(s)"),
    ({"cron": "60 * * * *"}, "the minute field `60`"),
    ({"cron": "* * 32 * *"}, "the day of month field `32`"),
    ({"cron": "* * * * mon-xyz"}, "the day of week field `mon-xyz`"),
    ({"cron": "0 2 * * *", "tz": "Nowhere/Land"}, "unknown time zone"),
    ({"cron": "0 2 * * *", "tz": "../../etc/passwd"}, "unknown time zone"),
    ({"every": "0s"}, "more than 0 seconds"),
    ({"every": "-1h"}, "more than 0 seconds"),
    ({"every": float("nan")}, "more than 0 seconds"),
    ({}, "give a schedule"),
    ({"cron": "@daily", "every": "1h"}, "not both"),
])
def test_a_bad_schedule_is_named_by_its_field(settings: dict, message: str) -> None:
    with pytest.raises(ScheduleError, match=None) as caught:
        Schedule.of(**settings)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_macros_and_spacing_are_accepted() -> None:
    assert Schedule.of(cron="@Daily").cron == "@daily"
    assert Schedule.of(cron=" 0   2 * * 1-5 ").cron == "0 2 * * 1-5"
    assert Schedule.from_json(Schedule.of(cron="@hourly", tz="Asia/Tokyo").to_json()) == \
        Schedule(cron="@hourly", tz="Asia/Tokyo")


def test_an_hourly_cron_runs_in_both_passes_of_the_repeated_hour() -> None:
    hourly = Schedule.of(cron="30 * * * *", tz="Europe/Berlin")
    first = hourly.next_after(stamp(2026, 10, 25, 2, 0), 0)  # 02:30 CEST
    second = hourly.next_after(first, 0)
    assert second - first == 3600 and local(second) == (10, 25, 2, 30)  # 02:30 CET
    nightly = Schedule.of(cron="30 2 * * *", tz="Europe/Berlin")
    assert nightly.latest(second + 60, 0) == first  # the repeat is not a slot of its own
