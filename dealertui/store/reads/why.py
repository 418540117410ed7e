"""`why`: what a job waits for, read in one transaction (engine/explain.py judges it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import BreakerRow, Job, JobState, Pause
from dealertui.store.reads.jobs import breaker_row, job_row
from dealertui.store.schema import breakers, controls, job_deps, jobs, workers
from dealertui.store.states import FAILED_OR_CANCELLED

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: a worker that has not heartbeaten for this long is not counted as one that could run a job
WORKER_SILENT_S = 300.0


@dataclass(frozen=True, slots=True)
class WhyFacts:
    """What `why` needs to explain one job, read in one transaction."""

    job: Job
    parents: list[Job]
    dead_ancestors: list[Job]  # failed or cancelled jobs above it
    pauses: list[Pause]  # the pauses that hold it (global, its dealer, its type)
    breakers: list[BreakerRow]  # its type's and its (dealer, type) breaker, if any
    dealer_running: int  # jobs of its dealer running now, fleet-wide
    ready_ahead: int  # ready jobs that a claim would take before it
    #: live workers whose config lacks the job's type: they leave it alone
    workers_without_type: list[str] = field(default_factory=list)


async def why_facts(store: JobStore, job_id: int) -> WhyFacts | None:
    async def tx(conn: AsyncConnection) -> WhyFacts | None:
        row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        if row is None:
            return None
        job = job_row(row)
        parent_ids = select(job_deps.c.parent_id).where(job_deps.c.child_id == job_id)
        parents = [job_row(r) for r in await conn.execute(
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
        dead = [job_row(r) for r in await conn.execute(
            select(jobs).where(jobs.c.id.in_(ancestor_ids),
                               jobs.c.state.in_(FAILED_OR_CANCELLED)).order_by(jobs.c.id)
        )] if ancestor_ids else []
        pauses = [
            Pause(r.scope, r.key, r.by, r.at, r.reason)
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
            breaker_row(r)
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
                    jobs.c.dealer_id == job.dealer_id, jobs.c.state == JobState.RUNNING
                )
            )
        ).scalar() or 0
        ahead = (
            await conn.execute(
                select(func.count()).where(
                    jobs.c.state == JobState.READY,
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
