"""Schedules in the database: who fires a tick, the running totals, and pauses.

A tick is fired by the engine whose INSERT makes its `schedule_ticks` row (ON CONFLICT DO
NOTHING, the same on SQLite and Postgres); the enqueue runs in that same transaction, so a
tick is fired once, with its pipelines, or (rolled back) not at all. No leader, no clock
agreement beyond the config: every engine computes the same tick from it (engine/ticks.py).

Each public function taking a JobStore is one transaction of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import EnqueueResult
from dealertui.store import controls, pipelines
from dealertui.store.schema import controls as controls_table
from dealertui.store.schema import dealers, schedule_ticks, schedules

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: the newest (schedule, tick) rows kept per schedule: enough that an engine whose clock is a
#: little behind still meets the row of a tick another engine fired (and the check on
#: schedules.last_tick refuses anything older), few enough that the table stays small
KEEP_TICKS = 100


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """What the database holds of one schedule (its row, and its pause if it has one)."""

    name: str
    first_seen_at: float
    last_tick: int
    last_fired_at: float | None
    ticks: int
    pipelines: int
    skipped: int


@dataclass(frozen=True, slots=True)
class SchedulePause:
    by: str | None
    at: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class Fired:
    """A tick this engine fired: the pipelines it enqueued and the dealers it skipped."""

    schedule: str
    tick: int
    result: EnqueueResult


async def _rows(conn: AsyncConnection) -> tuple[dict[str, ScheduleRow],
                                                dict[str, SchedulePause]]:
    found = {r.name: ScheduleRow(r.name, r.first_seen_at, r.last_tick, r.last_fired_at,
                                 r.ticks, r.pipelines, r.skipped)
             for r in await conn.execute(select(schedules))}
    paused = {r.key: SchedulePause(r.by, r.at, r.reason)
              for r in await conn.execute(select(controls_table).where(
                  controls_table.c.scope == "schedule", controls_table.c.paused == 1))}
    return found, paused


async def states(store: JobStore) -> tuple[dict[str, ScheduleRow], dict[str, SchedulePause]]:
    """Every schedule's row and every schedule pause, by name (one row per schedule)."""
    return await store.db.run(_rows, write=False)


_SEE = ("INSERT INTO schedules (name, first_seen_at, last_tick) VALUES (:name, :now, :tick) "
        "ON CONFLICT (name) DO NOTHING")


async def see(store: JobStore, first_ticks: Mapping[str, int]) -> None:
    """Record schedules seen for the first time, each with the tick due now as if fired: a
    new schedule fires from its next tick on, never for the ticks before it existed."""
    now = store.clock()

    async def tx(conn: AsyncConnection) -> None:
        await conn.execute(text(_SEE), [{"name": n, "now": now, "tick": t}
                                        for n, t in first_ticks.items()])

    await store.db.run(tx)


async def fire(
    store: JobStore,
    name: str,
    tick: int,
    *,
    worker_id: str,
    dealer_ids: Sequence[str] | None,
    types: Sequence[str],
    payload: Mapping[str, Any] | None,
    allow_duplicate: bool,
) -> Fired | None:
    """Fire *tick* of schedule *name* if no engine has fired it or a newer one: enqueue a
    pipeline per dealer (every dealer not disabled when *dealer_ids* is None) in the same
    transaction. None when another engine fired it, or a newer tick, first."""
    order = pipelines.type_order(store.rules, types or None)
    now = store.clock()

    async def tx(conn: AsyncConnection) -> Fired | None:
        won = await conn.execute(text(
            "INSERT INTO schedule_ticks (schedule, tick, fired_at, worker, pipelines, skipped) "
            "VALUES (:name, :tick, :now, :worker, 0, 0) ON CONFLICT (schedule, tick) DO NOTHING"
        ), {"name": name, "tick": tick, "now": now, "worker": worker_id})
        if won.rowcount != 1:
            return None
        # A tick older than one fired already (an engine whose clock is behind, once the
        # newer tick's row is pruned) is refused here, in the same transaction.
        newer = await conn.execute(text(
            "UPDATE schedules SET last_tick = :tick, last_fired_at = :now "
            "WHERE name = :name AND last_tick < :tick"), {"name": name, "tick": tick,
                                                          "now": now})
        if newer.rowcount != 1:
            await conn.execute(delete(schedule_ticks).where(
                schedule_ticks.c.schedule == name, schedule_ticks.c.tick == tick))
            return None
        query = select(dealers.c.id).where(dealers.c.disabled_at.is_(None))
        if dealer_ids is not None:
            query = query.where(dealers.c.id.in_(list(dealer_ids)))
        targets = list((await conn.execute(query.order_by(dealers.c.id))).scalars())
        result = await pipelines.enqueue(
            conn, store.rules, order, targets, types=types or None, payload=payload, by=None,
            now=now, schedule=name, allow_duplicate=allow_duplicate)
        counts = {"name": name, "tick": tick, "p": len(result.enqueued),
                  "s": len(result.skipped)}
        await conn.execute(text(
            "UPDATE schedule_ticks SET pipelines = :p, skipped = :s "
            "WHERE schedule = :name AND tick = :tick"), counts)
        await conn.execute(text(
            "UPDATE schedules SET ticks = ticks + 1, pipelines = pipelines + :p, "
            "skipped = skipped + :s WHERE name = :name"), counts)
        await conn.execute(text(
            "DELETE FROM schedule_ticks WHERE schedule = :name AND tick < (SELECT min(tick) "
            "FROM (SELECT tick FROM schedule_ticks WHERE schedule = :name "
            "ORDER BY tick DESC LIMIT :keep) AS newest)"), {"name": name, "keep": KEEP_TICKS})
        return Fired(name, tick, result)

    return await store.db.run(tx)


_SKIP_TO = (
    "INSERT INTO schedules (name, first_seen_at, last_tick) VALUES (:name, :now, :tick) "
    "ON CONFLICT (name) DO UPDATE SET last_tick = CASE WHEN schedules.last_tick < "
    "excluded.last_tick THEN excluded.last_tick ELSE schedules.last_tick END"
)


async def set_paused(
    store: JobStore, name: str, paused: bool, *, due: int, by: str | None,
    reason: str | None,
) -> None:
    """Pause or resume schedule *name* (audited like every pause). A resume also marks the
    tick due now, *due*, as done: the ticks missed while paused are dropped, not fired."""
    now = store.clock()

    async def tx(conn: AsyncConnection) -> None:
        was = (await conn.execute(select(controls_table.c.paused).where(
            controls_table.c.scope == "schedule", controls_table.c.key == name))).scalar()
        await controls.set_paused(conn, paused, dealer_id=None, job_type=None, by=by,
                                  reason=reason, now=now, schedule=name)
        if was and not paused:  # (a tick overdue for other reasons still catches up)
            await conn.execute(text(_SKIP_TO), {"name": name, "now": now, "tick": due})

    await store.db.run(tx)

