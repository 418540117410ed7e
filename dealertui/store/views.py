"""Read models for the console: one read transaction per refresh, nothing written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import Job, empty_state_counts
from dealertui.store.insights import oldest_claimable
from dealertui.store.jobstore import JobStore, _job
from dealertui.store.schema import breakers, controls, dealers, job_deps, job_events, jobs, workers

EVENT_LIMIT = 200


#: a worker that has not heartbeaten for this long is not counted as one that could run a job
WORKER_SILENT_S = 300.0


@dataclass(frozen=True, slots=True)
class LaneCell:
    job_id: int
    state: str
    attempts: int
    updated_at: float
    last_error: str | None


@dataclass(slots=True)
class ConsoleSnapshot:
    """Everything one console refresh shows, read in one transaction."""

    now: float
    dealers: list[tuple[str, str | None]]
    #: (dealer_id, job_type) -> the newest job of that type for the dealer
    lanes: dict[tuple[str, str], LaneCell]
    by_state: dict[str, int]
    breakers: list[dict[str, Any]]
    paused: set[tuple[str, str]]
    workers: list[dict[str, Any]]
    #: job_events newer than the caller's cursor, oldest first (at most EVENT_LIMIT)
    events: list[dict[str, Any]] = field(default_factory=list)
    last_event_id: int = 0
    #: outcomes (succeeded/failed/retrying) recorded since the caller's cursor
    finished_since: int = 0
    succeeded_since: int = 0
    #: dealer -> when its oldest due ready job became ready (the fairness meter's input)
    oldest_ready: dict[str, float] = field(default_factory=dict)
    #: dealers disabled (`dealers disable`): shown in their lane, never claimed
    disabled: set[str] = field(default_factory=set)


async def console_snapshot(
    store: JobStore, *, after_event_id: int | None, previous: ConsoleSnapshot | None = None
) -> ConsoleSnapshot:
    """Dealers, each dealer's newest job per type, counts, breakers, pauses, workers and the
    events since *after_event_id* (None: just the cursor, no backlog).

    With *previous*, the lanes and the counts by state are taken from it when no job event
    was written since it was read: every transition writes one, and reading the newest job of
    each dealer and type was most of a refresh (70 ms of 1,000 dealers x 8,000 jobs, twice a
    second, a quarter of a core with nothing happening)."""
    now = store.clock()

    async def tx(conn: AsyncConnection) -> ConsoleSnapshot:
        rows = await conn.execute(
            select(dealers.c.id, dealers.c.name, dealers.c.disabled_at).order_by(dealers.c.id)
        )
        dealer_rows, disabled = [], set()
        for r in rows:
            dealer_rows.append((r.id, r.name))
            if r.disabled_at is not None:
                disabled.add(r.id)
        top = (await conn.execute(select(func.max(job_events.c.id)))).scalar() or 0
        if previous is not None and previous.last_event_id == top:
            lanes, by_state = previous.lanes, previous.by_state
        else:
            lanes, by_state = await _lanes_and_counts(conn)
        breaker_rows = [
            dict(r._mapping)
            for r in await conn.execute(select(breakers).order_by(breakers.c.key))
        ]
        paused = {
            (r.scope, r.key)
            for r in await conn.execute(
                select(controls.c.scope, controls.c.key).where(controls.c.paused == 1)
            )
        }
        worker_rows = [
            dict(r._mapping)
            for r in await conn.execute(
                select(workers).where(workers.c.stopped_at.is_(None)).order_by(workers.c.id)
            )
        ]
        oldest = await oldest_claimable(conn, now)
        snap = ConsoleSnapshot(now, dealer_rows, lanes, by_state, breaker_rows, paused,
                               worker_rows, last_event_id=top, oldest_ready=oldest,
                               disabled=disabled)
        if after_event_id is not None and top > after_event_id:
            rows = await conn.execute(
                select(job_events)
                .where(job_events.c.id > after_event_id)
                .order_by(job_events.c.id.desc())
                .limit(EVENT_LIMIT)
            )
            snap.events = [dict(r._mapping) for r in reversed(rows.all())]
            counts = await conn.execute(
                text(
                    "SELECT to_state, count(*) FROM job_events WHERE id > :after "
                    "AND to_state IN ('succeeded', 'failed', 'retrying') GROUP BY to_state"
                ),
                {"after": after_event_id},
            )
            for state, n in counts:
                snap.finished_since += n
                if state == "succeeded":
                    snap.succeeded_since += n
        return snap

    return await store.db.run(tx, write=False)


async def _lanes_and_counts(
    conn: AsyncConnection,
) -> tuple[dict[tuple[str, str], LaneCell], dict[str, int]]:
    newest = select(func.max(jobs.c.id)).group_by(jobs.c.dealer_id, jobs.c.job_type)
    lanes = {
        (r.dealer_id, r.job_type): LaneCell(r.id, r.state, r.attempts, r.updated_at, r.last_error)
        for r in await conn.execute(
            select(
                jobs.c.id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.state, jobs.c.attempts,
                jobs.c.updated_at, jobs.c.last_error,
            ).where(jobs.c.id.in_(newest))
        )
    }
    by_state = empty_state_counts()
    for state, n in await conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)):
        if state in by_state:
            by_state[state] = n
    return lanes, by_state


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: Job
    events: list[dict[str, Any]]
    parents: list[Job]
    children: list[Job]


async def job_detail(store: JobStore, job_id: int) -> JobDetail | None:
    """A job with its timeline (job_events), parents and children."""

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
        parents = [_job(r) for r in await conn.execute(
            select(jobs).where(jobs.c.id.in_(parent_ids)).order_by(jobs.c.id))]
        children = [_job(r) for r in await conn.execute(
            select(jobs).where(jobs.c.id.in_(child_ids)).order_by(jobs.c.id))]
        return JobDetail(_job(row), events, parents, children)

    return await store.db.run(tx, write=False)


@dataclass(frozen=True, slots=True)
class WhyFacts:
    """What `why` needs to explain one job, read in one transaction."""

    job: Job
    parents: list[Job]
    dead_ancestors: list[Job]  # failed or cancelled jobs above it
    pauses: list[dict[str, Any]]  # controls rows that hold it (global, its dealer, its type)
    breakers: list[dict[str, Any]]  # its type's and its (dealer, type) breaker, if any
    dealer_running: int  # jobs of its dealer running now, fleet-wide
    ready_ahead: int  # ready jobs that a claim would take before it
    #: live workers whose config lacks the job's type: they leave it alone
    workers_without_type: list[str] = field(default_factory=list)


async def why_facts(store: JobStore, job_id: int) -> WhyFacts | None:
    async def tx(conn: AsyncConnection) -> WhyFacts | None:
        row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        if row is None:
            return None
        job = _job(row)
        parent_ids = select(job_deps.c.parent_id).where(job_deps.c.child_id == job_id)
        parents = [_job(r) for r in await conn.execute(
            select(jobs).where(jobs.c.id.in_(parent_ids)).order_by(jobs.c.id))]
        up = await conn.execute(
            text(
                """
                WITH RECURSIVE up(id) AS (
                    SELECT parent_id FROM job_deps WHERE child_id = :id
                    UNION
                    SELECT d.parent_id FROM job_deps d JOIN up ON d.child_id = up.id
                )
                SELECT id FROM up
                """
            ),
            {"id": job_id},
        )
        ancestor_ids = [r.id for r in up]
        dead = [_job(r) for r in await conn.execute(
            select(jobs).where(jobs.c.id.in_(ancestor_ids),
                               jobs.c.state.in_(["failed", "cancelled"])).order_by(jobs.c.id)
        )] if ancestor_ids else []
        pauses = [
            dict(r._mapping)
            for r in await conn.execute(
                select(controls).where(
                    controls.c.paused == 1,
                    ((controls.c.scope == "global") & (controls.c.key == ""))
                    | ((controls.c.scope == "dealer") & (controls.c.key == job.dealer_id))
                    | ((controls.c.scope == "type") & (controls.c.key == job.job_type)),
                )
            )
        ]
        breaker_rows = [
            dict(r._mapping)
            for r in await conn.execute(
                select(breakers).where(
                    breakers.c.key.in_(
                        [f"type:{job.job_type}", f"dealer:{job.dealer_id}:{job.job_type}"]
                    )
                )
            )
        ]
        running = (
            await conn.execute(
                select(func.count()).where(
                    jobs.c.dealer_id == job.dealer_id, jobs.c.state == "running"
                )
            )
        ).scalar() or 0
        ahead = (
            await conn.execute(
                select(func.count()).where(
                    jobs.c.state == "ready",
                    (jobs.c.priority < job.priority)
                    | ((jobs.c.priority == job.priority) & (jobs.c.id < job.id)),
                )
            )
        ).scalar() or 0
        unaware = [
            r.id for r in await conn.execute(
                select(workers.c.id, workers.c.job_types).where(
                    workers.c.stopped_at.is_(None), workers.c.job_types.is_not(None),
                    workers.c.heartbeat_at >= store.clock() - WORKER_SILENT_S,
                ).order_by(workers.c.id)
            )
            if job.job_type not in json.loads(r.job_types)
        ]
        return WhyFacts(job, parents, dead, pauses, breaker_rows, running, ahead, unaware)

    return await store.db.run(tx, write=False)
