"""Pauses: of a dealer, of a job type, of a schedule, or of everything (controls rows)."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import Pause
from dealertui.store import audit, fastpath
from dealertui.store.schema import controls


def keys_of(dealer_id: str | None, job_type: str | None,
            schedule: str | None = None) -> list[tuple[str, str]]:
    """The controls keys a pause of *dealer_id* and/or *job_type*, or of *schedule* (none of
    them: all) sets."""
    keys: list[tuple[str, str]] = [("schedule", schedule)] if schedule is not None else []
    if dealer_id is not None:
        keys.append(("dealer", dealer_id))
    if job_type is not None:
        keys.append(("type", job_type))
    if not keys:
        keys.append(("global", ""))
    return keys


async def set_paused(
    conn: AsyncConnection,
    paused: bool,
    *,
    dealer_id: str | None,
    job_type: str | None,
    by: str | None,
    reason: str | None,
    now: float,
    schedule: str | None = None,
) -> None:
    """Pause or resume a dealer, a job type, both, a schedule, or (none) everything."""
    for scope, key in keys_of(dealer_id, job_type, schedule):
        where = (controls.c.scope == scope, controls.c.key == key)
        held = (await conn.execute(select(controls).where(*where))).first()
        if paused and held is not None and held.paused and reason is None:
            continue  # paused already: pausing again keeps who, since when and why
        await conn.execute(controls.delete().where(*where))
        if paused:
            await conn.execute(
                insert(controls).values(
                    scope=scope, key=key, paused=1, by=by, at=now, reason=reason
                )
            )
    await audit.record(
        conn, by=by, action="pause" if paused else "resume", reason=reason, at=now,
        job_ids=[], target=audit.target(dealer_id=dealer_id, job_type=job_type,
                                        schedule=schedule),
    )


async def pauses(conn: AsyncConnection) -> list[Pause]:
    rows = await conn.execute(
        select(controls).where(controls.c.paused == 1).order_by(controls.c.scope, controls.c.key)
    )
    return [Pause(r.scope, r.key, r.by, r.at, r.reason) for r in rows]


async def paused_keys(conn: AsyncConnection) -> set[tuple[str, str]]:
    """(scope, key) of every pause in force: read by each claim, on the fast path."""
    rows = await fastpath.fetch(conn, 'SELECT scope, "key" FROM controls WHERE paused = 1')
    return {(scope, key) for scope, key in rows}
