"""Schedules: the upkeep step that fires them, and what `dealertui schedules` and the console
show of them.

Every engine runs `fire_due` (engine/upkeep.py): it fires, per schedule, only the newest tick
due, so ticks missed while no engine ran collapse into one catch-up firing; the database
decides which engine fires it (store/schedules.py).
"""

from __future__ import annotations

import time
from typing import TypedDict

from dealertui.config import Config, ScheduleConfig
from dealertui.engine.events import EventBus, ScheduleFired
from dealertui.engine.ticks import due_tick, next_tick
from dealertui.errors import UsageError
from dealertui.store import JobStore
from dealertui.store import schedules as store_schedules


async def fire_due(store: JobStore, config: Config, worker_id: str, bus: EventBus) -> None:
    """Fire each schedule's newest due tick that no engine has fired (an upkeep step)."""
    if not config.schedules:
        return
    now = store.clock()
    rows, paused = await store_schedules.states(store)
    due = {s.name: due_tick(s, now) for s in config.schedules}
    new = {name: tick for name, tick in due.items() if name not in rows}
    if new:
        await store_schedules.see(store, new)
    for s in config.schedules:
        row = rows.get(s.name)
        if row is None or s.name in paused or due[s.name] <= row.last_tick:
            continue
        fired = await store_schedules.fire(
            store, s.name, due[s.name], worker_id=worker_id, dealer_ids=s.dealers,
            types=s.types, payload=s.payload, allow_duplicate=s.overlap == "queue")
        if fired is not None:
            bus.emit(ScheduleFired(s.name, fired.tick, len(fired.result.enqueued),
                                   len(fired.result.skipped), time.time()))


def find(config: Config, name: str) -> ScheduleConfig:
    """The schedule *name* of the config; UsageError naming the known ones otherwise."""
    for s in config.schedules:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in config.schedules) or "none; add a [[schedules]] table"
    raise UsageError(f"unknown schedule {name!r} (known: {known}).")


async def set_paused(store: JobStore, config: Config, name: str, paused: bool, *,
                     by: str, reason: str | None) -> None:
    """Pause or resume a schedule in the database, for every engine. Resuming drops the
    ticks missed while paused: the next tick fires on time, none fires at once."""
    schedule = find(config, name)
    await store_schedules.set_paused(store, name, paused, due=due_tick(schedule, store.clock()),
                                     by=by, reason=reason)


class ScheduleInfo(TypedDict):
    """One schedule as `schedules --json` prints it (times: seconds since the epoch)."""

    name: str
    when: str  # "cron 0 * * * * (Europe/Berlin)" or "every 15m"
    cron: str | None
    every_s: int | None
    timezone: str
    dealers: str | list[str]  # "all" or the ids
    types: list[str]  # [] : every job type
    overlap: str
    paused: bool
    paused_by: str | None
    paused_at: float | None
    first_seen_at: float | None  # None: no engine has run since it was added
    last_tick: int | None  # the newest tick fired; None before the first firing
    last_fired_at: float | None
    next_due: int  # the tick the next engine fires (in the past when overdue)
    overdue: bool
    ticks: int
    pipelines: int
    skipped: int


async def report(store: JobStore, config: Config) -> list[ScheduleInfo]:
    """Every schedule of the config with what the database holds of it."""
    rows, paused = await store_schedules.states(store)
    now = store.clock()
    out: list[ScheduleInfo] = []
    for s in config.schedules:
        row, pause = rows.get(s.name), paused.get(s.name)
        due = due_tick(s, now)
        overdue = row is not None and pause is None and due > row.last_tick
        fired = row is not None and row.last_fired_at is not None
        out.append(ScheduleInfo(
            name=s.name, when=s.when, cron=s.cron, every_s=s.every_s, timezone=s.timezone,
            dealers="all" if s.dealers is None else list(s.dealers), types=list(s.types),
            overlap=s.overlap, paused=pause is not None,
            paused_by=pause.by if pause else None, paused_at=pause.at if pause else None,
            first_seen_at=row.first_seen_at if row else None,
            last_tick=row.last_tick if row and fired else None,
            last_fired_at=row.last_fired_at if row else None,
            next_due=due if overdue else next_tick(s, now),
            overdue=overdue,
            ticks=row.ticks if row else 0, pipelines=row.pipelines if row else 0,
            skipped=row.skipped if row else 0,
        ))
    return out
