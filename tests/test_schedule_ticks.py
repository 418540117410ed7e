"""The tick math of schedules (engine/ticks.py), a pure function of the config and a time: a
cron schedule in Europe/Berlin across both DST changes of 2026 (clocks forward on 29 March at
02:00, back on 25 October at 03:00), and interval ticks on the epoch's grid."""

from __future__ import annotations

from datetime import UTC, datetime

from dealertui.config import ScheduleConfig
from dealertui.engine.ticks import due_tick, next_tick, ticks_between

BERLIN = "Europe/Berlin"


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def cron(expr: str, zone: str = BERLIN) -> ScheduleConfig:
    return ScheduleConfig("s", expr, None, zone)


def test_hourly_keeps_every_absolute_hour_when_the_clock_springs_forward() -> None:
    # local 01:00 CET, then 03:00 CEST: 02:00 never happens, and no hour is lost or doubled
    ticks = ticks_between(cron("0 * * * *"), utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 3, 0))
    assert ticks == [utc(2026, 3, 29, h) for h in range(4)]


def test_hourly_fires_both_passes_of_the_hour_the_clock_turns_back() -> None:
    # local 02:00 CEST (00:00 UTC) and 02:00 CET (01:00 UTC) are an hour apart: both fire
    ticks = ticks_between(cron("0 * * * *"), utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 2, 0))
    assert ticks == [utc(2026, 10, 24, 23), *(utc(2026, 10, 25, h) for h in range(3))]


def test_a_daily_time_in_the_skipped_hour_fires_once_right_after_the_gap() -> None:
    ticks = ticks_between(cron("30 2 * * *"), utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert ticks == [utc(2026, 3, 28, 1, 30),  # 02:30 CET
                     utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST
                     utc(2026, 3, 30, 0, 30)]  # 02:30 CEST


def test_a_daily_time_in_the_repeated_hour_fires_once_not_twice() -> None:
    ticks = ticks_between(cron("30 2 * * *"), utc(2026, 10, 23, 12), utc(2026, 10, 26, 12))
    assert ticks == [utc(2026, 10, 24, 0, 30),  # 02:30 CEST
                     utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST); not the CET one
                     utc(2026, 10, 26, 1, 30)]  # 02:30 CET
    # due during the second 02:30 is still the first one: nothing new to fire
    assert due_tick(cron("30 2 * * *"), utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)


def test_due_counts_a_tick_at_exactly_now_and_next_is_strictly_after() -> None:
    s = cron("0 * * * *")
    at = utc(2026, 3, 29, 1, 0)
    assert due_tick(s, at) == at
    assert due_tick(s, at - 0.5) == utc(2026, 3, 29, 0, 0)
    assert next_tick(s, at) == utc(2026, 3, 29, 2, 0)
    assert next_tick(s, at - 0.5) == at


def test_the_same_expression_in_utc_ignores_berlin_s_changes() -> None:
    ticks = ticks_between(cron("30 2 * * *", "UTC"), utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert ticks == [utc(2026, 10, 25, 2, 30), utc(2026, 10, 26, 2, 30)]


def test_every_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    s = ScheduleConfig("s", None, 900, "UTC")
    assert due_tick(s, utc(2026, 3, 29, 10, 14, 59)) == utc(2026, 3, 29, 10, 0)
    assert due_tick(s, utc(2026, 3, 29, 10, 15)) == utc(2026, 3, 29, 10, 15)
    assert next_tick(s, utc(2026, 3, 29, 10, 15)) == utc(2026, 3, 29, 10, 30)
    assert len(ticks_between(s, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))) == 96  # DST or not
