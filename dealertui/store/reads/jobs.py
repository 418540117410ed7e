"""Jobs, their edges, dealers and breakers as they are now (each read runs in the caller's
read transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import BreakerRow, Dealer, Job
from dealertui.store import breakers as breaker_ops
from dealertui.store.reads.timeline import timeline
from dealertui.store.schema import dealers, job_deps, job_events, jobs

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore


def job_row(row: Any) -> Job:
    """A jobs row as a Job."""
    return Job(**{k: getattr(row, k) for k in Job.__slots__})


async def get_job(conn: AsyncConnection, job_id: int) -> Job | None:
    row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
    return job_row(row) if row else None


async def list_jobs(
    conn: AsyncConnection,
    *,
    dealer_id: str | None,
    states: Sequence[str] | None,
    job_ids: Sequence[int] | None,
) -> list[Job]:
    q = select(jobs).order_by(jobs.c.id)
    if dealer_id is not None:
        q = q.where(jobs.c.dealer_id == dealer_id)
    if states is not None:
        q = q.where(jobs.c.state.in_(list(states)))
    if job_ids is not None:
        q = q.where(jobs.c.id.in_(list(job_ids)))
    return [job_row(r) for r in await conn.execute(q)]


async def edges(conn: AsyncConnection, *, dealer_id: str | None) -> list[tuple[int, int]]:
    """Dependency edges as (parent_id, child_id)."""
    q = select(job_deps.c.parent_id, job_deps.c.child_id)
    if dealer_id is not None:
        q = q.join(jobs, jobs.c.id == job_deps.c.child_id).where(jobs.c.dealer_id == dealer_id)
    return [(r.parent_id, r.child_id) for r in await conn.execute(q)]


async def list_dealers(conn: AsyncConnection) -> list[Dealer]:
    rows = await conn.execute(select(dealers).order_by(dealers.c.id))
    return [Dealer(r.id, r.name, r.created_at, r.last_served_at or None, r.disabled_at)
            for r in rows]


async def dealer_ids(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(select(dealers.c.id).order_by(dealers.c.id))).scalars())


async def breaker_states(conn: AsyncConnection) -> list[BreakerRow]:
    """Every breaker, by key."""
    return [breaker_row(r) for r in await breaker_ops.snapshot(conn)]


def breaker_row(r: Any) -> BreakerRow:
    """A breakers row as the read model answers it."""
    return BreakerRow(key=r.key, dealer_id=r.dealer_id, job_type=r.job_type, state=r.state,
                      failures=r.failures, calls=r.calls, window_started_at=r.window_started_at,
                      opened_at=r.opened_at, half_open_at=r.half_open_at, trials=r.trials,
                      updated_at=r.updated_at)


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: Job
    events: list[dict[str, Any]]
    parents: list[Job]
    children: list[Job]


async def job_detail(store: JobStore, job_id: int) -> JobDetail | None:
    """A job with its timeline (job_events and the happy path its row records), parents
    and children."""

    async def tx(conn: AsyncConnection) -> JobDetail | None:
        row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        if row is None:
            return None
        events = [
            dict(r._mapping)
            for r in await conn.execute(
                select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            )
        ]
        parent_ids = select(job_deps.c.parent_id).where(job_deps.c.child_id == job_id)
        child_ids = select(job_deps.c.child_id).where(job_deps.c.parent_id == job_id)
        parents = [job_row(r) for r in await conn.execute(
            select(jobs).where(jobs.c.id.in_(parent_ids)).order_by(jobs.c.id))]
        children = [job_row(r) for r in await conn.execute(
            select(jobs).where(jobs.c.id.in_(child_ids)).order_by(jobs.c.id))]
        job = job_row(row)
        return JobDetail(job, timeline(job, events, parents=parents), parents,
                         children)

    return await store.db.run(tx, write=False)
