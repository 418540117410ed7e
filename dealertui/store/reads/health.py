"""`health`: the facts its five checks judge (engine/health.py), in one read transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import HealthFacts, JobState
from dealertui.store import tallies
from dealertui.store.schema import breakers, controls, jobs, workers

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: stopped workers reported beside the live ones (newest first)
STOPPED_WORKERS_SHOWN = 10


async def health_facts(
    store: JobStore, *, heartbeat_within_s: float, window_s: float
) -> HealthFacts:
    """What `health` judges, read in one transaction.

    Keys: ``now``; ``stuck_jobs`` (running with an expired lease) and
    ``oldest_expired_lease_at``; ``workers`` (live rows, then up to 10 stopped ones, newest
    first) with ``live_workers``; ``newest_heartbeat_at`` (live workers that process jobs);
    ``last_seen_at`` (also counting when stopped ones stopped); ``fresh_workers`` (live
    with a heartbeat within *heartbeat_within_s*); ``open_breakers`` (state open or
    half_open); ``outcomes`` (jobs that succeeded, failed or went to retry in the last
    *window_s*, from outcome_tallies; a job released by a stopping worker is no outcome);
    ``ready_due``, ``retrying_due``, ``ready_total`` and ``paused_globally``.
    """
    now = store.clock()

    async def tx(conn: AsyncConnection) -> HealthFacts:
        stuck, oldest = (
            await conn.execute(
                select(func.count(), func.min(jobs.c.locked_until)).where(
                    jobs.c.state == JobState.RUNNING, jobs.c.locked_until < now
                )
            )
        ).one()
        live = (
            await conn.execute(
                select(workers).where(workers.c.stopped_at.is_(None))
                .order_by(workers.c.heartbeat_at.desc(), workers.c.id)
            )
        ).all()
        stopped = (
            await conn.execute(
                select(workers).where(workers.c.stopped_at.is_not(None))
                .order_by(workers.c.stopped_at.desc(), workers.c.id)
                .limit(STOPPED_WORKERS_SHOWN)
            )
        ).all()
        processors = [w for w in live if w.kind != "console"]
        seen = [w.heartbeat_at for w in processors] + [
            w.stopped_at for w in stopped if w.kind != "console"
        ]
        open_rows = await conn.execute(
            select(breakers.c.key, breakers.c.dealer_id, breakers.c.state, breakers.c.opened_at,
                   breakers.c.failures, breakers.c.calls)
            .where(breakers.c.state.in_(["open", "half_open"]))
            .order_by(breakers.c.opened_at, breakers.c.key)
        )
        # tallied per batch (store/tallies.py): no job_events row per success to count
        t = await tallies.read(conn, window_s=window_s, now=now)
        outcomes = {JobState.SUCCEEDED.value: t.succeeded, JobState.FAILED.value: t.failed,
                    JobState.RETRYING.value: t.retried}
        # one state per query: each is the predicate of a partial index, an IN of both is
        # none of them (it read every job ever run)
        ready_due, ready_total = (await conn.execute(
            select(func.count().filter(jobs.c.run_after <= now), func.count())
            .where(jobs.c.state == JobState.READY))).one()
        retrying_due = (await conn.execute(
            select(func.count()).where(jobs.c.state == JobState.RETRYING,
                                       jobs.c.run_after <= now))).scalar_one()
        paused = (
            await conn.execute(
                select(func.count()).select_from(controls).where(
                    controls.c.scope == "global", controls.c.paused == 1
                )
            )
        ).scalar_one()
        return {
            "now": now,
            "stuck_jobs": stuck,
            "oldest_expired_lease_at": oldest,
            "workers": [dict(w._mapping) for w in (*live, *stopped)],
            "live_workers": len(live),
            "newest_heartbeat_at": max((w.heartbeat_at for w in processors), default=None),
            "last_seen_at": max(seen, default=None),
            "fresh_workers": sum(
                1 for w in processors if w.heartbeat_at >= now - heartbeat_within_s
            ),
            # not counted as workers (a console's engine stops when its console closes), but
            # named, so health does not say that nothing is running
            "console_engines": sum(
                1 for w in live
                if w.kind == "console" and w.heartbeat_at >= now - heartbeat_within_s
            ),
            "open_breakers": [dict(r._mapping) for r in open_rows],
            "outcomes": outcomes,
            "window_s": window_s,
            "ready_due": ready_due,
            "retrying_due": retrying_due,
            "ready_total": ready_total,
            "paused_globally": bool(paused),
        }

    return await store.db.run(tx, write=False)
