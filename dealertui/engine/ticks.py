"""When a schedule is due: its ticks as whole seconds since the epoch, the same in every
process that reads the same config (that is what lets them agree on "this tick" with no
leader).

`every` ticks are the multiples of the interval since the epoch (every = "15m": :00, :15, :30,
:45 UTC), so no state is needed to know them. `cron` ticks are croniter's in the schedule's
time zone, with one rule of our own for the hour a clock turns back: an expression with a
fixed hour ("30 2 * * *") fires on the first 02:30 only, as Vixie cron does, while one whose
hour field is a wildcard or step ("0 * * * *", "0 */2 * * *") keeps every absolute hour.
In the hour a clock skips, croniter moves a tick to the first time after the gap (02:30 ->
03:00), as Vixie cron runs such jobs right after the change.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from croniter import croniter

from dealertui.config import ScheduleConfig

#: how many ticks in a row may fall in a repeated hour before we stop looking (a fixed-hour
#: expression has at most 60 minutes of them there)
_FOLD_LIMIT = 120


def _zone(name: str) -> tzinfo:
    # UTC without the tz database: a box without tzdata still runs the default zone
    return UTC if name == "UTC" else ZoneInfo(name)


def _fires_in_repeated_hour(expr: str) -> bool:
    return expr.split()[1].startswith("*")


def _keep(expr: str, t: float, zone: tzinfo) -> bool:
    """False for a tick in the second pass of a repeated hour of a fixed-hour expression."""
    return _fires_in_repeated_hour(expr) or datetime.fromtimestamp(t, zone).fold == 0


def _cron_step(expr: str, zone: tzinfo, start: float, forward: bool) -> int:
    it = croniter(expr, datetime.fromtimestamp(start, zone))
    for _ in range(_FOLD_LIMIT):
        t = it.get_next(float) if forward else it.get_prev(float)
        if _keep(expr, t, zone):
            return int(t)
    raise ValueError(f"cron {expr!r} has no tick near {start}")  # never for a valid expression


def due_tick(schedule: ScheduleConfig, now: float) -> int:
    """The newest tick at or before *now*."""
    if schedule.every_s is not None:
        return math.floor(now / schedule.every_s) * schedule.every_s
    assert schedule.cron is not None
    # croniter's get_prev is strictly before its start: start a second on, so a tick at
    # exactly *now* (cron ticks are whole minutes) counts as due
    return _cron_step(schedule.cron, _zone(schedule.timezone), math.floor(now) + 1,
                      forward=False)


def next_tick(schedule: ScheduleConfig, after: float) -> int:
    """The first tick strictly after *after*."""
    if schedule.every_s is not None:
        return (math.floor(after / schedule.every_s) + 1) * schedule.every_s
    assert schedule.cron is not None
    return _cron_step(schedule.cron, _zone(schedule.timezone), math.floor(after),
                      forward=True)


def ticks_between(schedule: ScheduleConfig, start: float, end: float) -> list[int]:
    """Every tick in (start, end]: what a schedule would fire if an engine ran all along."""
    out = []
    t = next_tick(schedule, start)
    while t <= end:
        out.append(t)
        t = next_tick(schedule, t)
    return out
