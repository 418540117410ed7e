"""[[schedules]]: pipelines enqueued on a clock (docs/design.md, "Schedules").

Each schedule is checked against the rest of the config (its dealers against [[dealers]], its
types against the job types), so a schedule that could never enqueue is refused when the file
is read, not an hour later in a worker's log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from dealertui.config.validate import Table, fail, show

SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OVERLAP = ("skip", "queue")
_KEYS = ("name", "cron", "every", "timezone", "dealers", "types", "payload", "overlap")
_EVERY = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ScheduleConfig:
    """One [[schedules]] entry; exactly one of *cron* and *every_s* is set."""

    name: str
    cron: str | None
    every_s: int | None
    timezone: str = "UTC"
    #: None: every dealer that is not disabled, at the time of each tick
    dealers: tuple[str, ...] | None = None
    #: () : every job type (a whole pipeline)
    types: tuple[str, ...] = ()
    payload: Mapping[str, Any] | None = field(default=None, hash=False)
    overlap: str = "skip"

    @property
    def when(self) -> str:
        """The schedule's clock as the config wrote it, for listings."""
        if self.cron is not None:
            return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone != "UTC" else "")
        return f"every {_show_every(self.every_s or 0)}"


def _show_every(seconds: int) -> str:
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


def parse_schedules(
    where: str, raw: Any, dealer_ids: Sequence[str], job_types: Sequence[str]
) -> tuple[ScheduleConfig, ...]:
    """Validate the [[schedules]] array against the config's dealers and job types."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        fail(where, "schedules", f"must be an array of tables ([[schedules]]), not {show(raw)}")
    seen: dict[str, int] = {}
    result = []
    for index, item in enumerate(raw):
        table = Table(where, f"schedules[{index}]", item, _KEYS)
        name = table.get("name", "a string")
        if not SCHEDULE_NAME_RE.fullmatch(name):
            table.fail("name", f"{show(name)} is not a valid schedule name "
                               f"({SCHEDULE_NAME_RE.pattern})")
        if name in seen:
            table.fail("name", f"{show(name)} repeats schedules[{seen[name]}].name")
        seen[name] = index
        result.append(_one(table, name, dealer_ids, job_types))
    return tuple(result)


def _one(table: Table, name: str, dealer_ids: Sequence[str],
         job_types: Sequence[str]) -> ScheduleConfig:
    cron = table.get("cron", "a string", None)
    every = table.get("every", "a string", None)
    if (cron is None) == (every is None):
        got = "both" if cron is not None else "neither"
        table.fail("cron", f"or every must be set, exactly one of them (schedule {show(name)} "
                           f"has {got})")
    zone = table.get("timezone", "a string", "UTC")
    try:
        if zone != "UTC":  # the default needs no tz database (engine/ticks.py)
            ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        table.fail("timezone", f"{show(zone)} is not a known time zone (such as "
                               '"UTC" or "Europe/Berlin")')
    every_s = None
    if cron is not None:
        # five fields only: croniter also takes a sixth (seconds) and a seventh (year)
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            table.fail("cron", f"{show(cron)} is not a five-field cron expression (minute "
                               'hour day-of-month month day-of-week, such as "0 * * * *")')
    else:
        found = _EVERY.fullmatch(every)
        every_s = int(found[1]) * _UNIT_S[found[2]] if found else 0
        if every_s <= 0:
            table.fail("every", f"{show(every)} is not an interval (a whole number with s, m, "
                                'h or d, such as "15m")')
        if "timezone" in table.data:
            # an interval counts seconds since the epoch: a zone would change nothing
            table.fail("timezone", "applies to cron only, not to every")
    dealers = _dealers(table, dealer_ids)
    types = tuple(table.get("types", "a list of strings", []))
    for t in types:
        if t not in job_types:
            table.fail("types", f"names unknown job type {show(t)} "
                                f"(known: {', '.join(job_types)})")
    payload = table.get("payload", "a table", None)
    overlap = table.get("overlap", "a string", "skip")
    if overlap not in OVERLAP:
        table.fail("overlap", f'must be "skip" or "queue", not {show(overlap)}')
    return ScheduleConfig(name, cron, every_s, zone, dealers, types, payload, overlap)


def _dealers(table: Table, dealer_ids: Sequence[str]) -> tuple[str, ...] | None:
    value = table.data.get("dealers", "all")
    if value == "all":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(d, str) for d in value):
        table.fail("dealers", f'must be "all" or a list of dealer ids, not {show(value)}')
    for d in value:
        if d not in dealer_ids:
            listed = ", ".join(dealer_ids[:10]) if dealer_ids else "none"
            table.fail("dealers", f"names dealer {show(d)}, which is not listed under "
                                  f"[[dealers]] (listed: {listed})")
    return tuple(dict.fromkeys(value))
