"""Fairness: each dealer's share of the outcomes and how long its oldest claimable job has
waited (the console's fairness meter, `status`'s starved dealers)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import Fairness
from dealertui.store.breakers import bucket_s
from dealertui.store.schema import dealers

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: a dealer whose oldest due ready job has waited longer than this is starved
STARVED_AFTER_S = 60.0


_OLDEST_CLAIMABLE = text(
    """
    SELECT j.dealer_id, min(coalesce(j.ready_at, j.run_after)) FROM jobs j
    WHERE j.state = 'ready' AND j.run_after <= :now
      AND NOT EXISTS (SELECT 1 FROM controls c WHERE c.paused = 1 AND (
            (c.scope = 'global')
            OR (c.scope = 'dealer' AND c."key" = j.dealer_id)
            OR (c.scope = 'type' AND c."key" = j.job_type)))
      AND NOT EXISTS (SELECT 1 FROM breakers b WHERE b.state <> 'closed'
            AND b.job_type = j.job_type AND (b.dealer_id IS NULL OR b.dealer_id = j.dealer_id))
    GROUP BY j.dealer_id
    """
)


async def oldest_claimable(conn: AsyncConnection, now: float) -> dict[str, float]:
    """Per dealer, since when its oldest due ready job has waited — counting only jobs a
    worker could claim now: a job held back by a pause or a breaker that is not closed is
    waiting on purpose, not starving (the fairness meter must not blame the scheduler)."""
    return {d: t for d, t in (await conn.execute(_OLDEST_CLAIMABLE, {"now": now})).all()}


async def fairness(
    store: JobStore,
    *,
    window_s: float | None = None,
    starved_after_s: float = STARVED_AFTER_S,
) -> dict[str, Fairness]:
    """Per dealer: share of the outcomes recorded in the last *window_s* (0..1; at most, and by
    default, the breakers' window: their tally is what is counted), seconds since it last got
    a slot, how long its oldest due ready job has waited, and `starved` when that
    wait exceeds *starved_after_s*."""
    now = store.clock()
    window = min(window_s or math.inf, store.breaker_cfg.window_s)

    async def tx(conn: AsyncConnection) -> dict[str, Fairness]:
        served = {
            r.id: r.last_served_at
            for r in await conn.execute(select(dealers.c.id, dealers.c.last_served_at))
        }
        # the breakers' per-dealer tally (breaker_calls): no job_events row per success.
        # Its buckets that overlap the window count whole, as the breakers count them.
        done: dict[str, int] = dict(
            (await conn.execute(
                text("SELECT dealer_id, sum(calls) FROM breaker_calls WHERE at > :lo "
                     "GROUP BY dealer_id"),
                {"lo": now - window - bucket_s(store.breaker_cfg)},
            )).all()
        )
        waiting = await oldest_claimable(conn, now)
        total = sum(done.values()) or 0
        out: dict[str, Fairness] = {}
        for dealer_id in sorted(served):
            last = served[dealer_id] or None
            oldest = waiting.get(dealer_id)
            wait = round(now - oldest, 1) if oldest is not None else None
            out[dealer_id] = {
                "share": round(done.get(dealer_id, 0) / total, 4) if total else 0.0,
                "outcomes": done.get(dealer_id, 0),
                "since_last_slot_s": round(now - last, 1) if last else None,
                "oldest_ready_wait_s": wait,
                "starved": wait is not None and wait > starved_after_s,
            }
        return out

    return await store.db.run(tx, write=False)
