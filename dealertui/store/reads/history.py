"""A dealer's pipelines (`dealertui history`, the console's history screen) and one pipeline's
jobs and edges (`graph --dealer`, `graph --pipeline`, the graph pane): read through the
pipelines table, so their cost is a page of pipelines, not the dealer's whole history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import TERMINAL_STATES, Job
from dealertui.store.reads.jobs import job_row
from dealertui.store.schema import job_deps, jobs, pipelines

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore


@dataclass(frozen=True, slots=True)
class PastPipeline:
    """One enqueue for one dealer, with its jobs in id order."""

    id: int
    dealer_id: str
    by: str | None  # OS user@host of the enqueue; None for the engine itself
    schedule: str | None
    created_at: float
    settled_at: float | None
    outcome: str | None  # its worst outcome once settled (store/pipelines.py)
    jobs: tuple[Job, ...]

    @property
    def started_at(self) -> float | None:
        starts = [j.started_at for j in self.jobs if j.started_at is not None]
        return min(starts) if starts else None

    @property
    def finished_at(self) -> float | None:
        """When its last job finished, once every job has."""
        if not self.jobs or any(j.state not in TERMINAL_STATES for j in self.jobs):
            return None
        ends = [j.finished_at for j in self.jobs if j.finished_at is not None]
        return max(ends) if ends else None

    def as_json(self) -> dict[str, Any]:
        """One element of `history --json` (the README lists the keys)."""
        return {
            "pipeline": self.id, "dealer_id": self.dealer_id, "by": self.by,
            "schedule": self.schedule, "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "outcome": self.outcome,
            "jobs": [{"id": j.id, "job_type": j.job_type, "state": j.state,
                      "attempts": j.attempts, "started_at": j.started_at,
                      "finished_at": j.finished_at, "duration_s": duration(j),
                      "last_error": j.last_error} for j in self.jobs],
        }


def duration(job: Job) -> float | None:
    """How long its last attempt ran, once it finished."""
    if job.started_at is None or job.finished_at is None or job.state not in TERMINAL_STATES:
        return None
    return max(job.finished_at - job.started_at, 0.0)


async def _with_jobs(conn: AsyncConnection, chosen: Any) -> list[PastPipeline]:
    """The pipelines *chosen* (a select of pipelines rows), newest first, with their jobs.

    Two statements, the second naming each pipeline's primary-key range of jobs as constants
    (Postgres has no index on jobs.pipeline_id): joined in one statement, both planners guess
    hundreds of thousands of rows a range, and Postgres hash-joins every job or compiles the
    plan (JIT), 130-250 ms at 1,000,000 jobs against a few ms."""
    found = (await conn.execute(chosen)).all()
    if not found:
        return []
    members: dict[int, list[Job]] = {r.id: [] for r in found}
    ranges = or_(*(jobs.c.id.between(r.first_job_id, r.last_job_id) for r in found))
    # "+ 0", and no ORDER BY: SQLite would rather scan every job, for pipeline_id or to
    # have them in id order, than read the ranges (a page of rows, sorted here)
    mine = (jobs.c.pipeline_id + 0).in_(list(members))
    for r in sorted(await conn.execute(select(jobs).where(ranges, mine)), key=lambda r: r.id):
        members[r.pipeline_id].append(job_row(r))
    return [PastPipeline(r.id, r.dealer_id, r.by, r.schedule, r.created_at, r.settled_at,
                         r.outcome, tuple(members[r.id])) for r in found]


async def dealer_history(store: JobStore, dealer_id: str, limit: int) -> list[PastPipeline]:
    """The dealer's *limit* newest pipelines, newest first (ix_pipelines_dealer)."""
    chosen = (select(pipelines).where(pipelines.c.dealer_id == dealer_id)
              .order_by(pipelines.c.id.desc()).limit(limit))
    return await store.db.run(lambda c: _with_jobs(c, chosen), write=False)


@dataclass(frozen=True, slots=True)
class PipelineJobs:
    pipeline: PastPipeline
    #: (parent, child) of every edge into its jobs, parents outside it included (a type left
    #: out of the enqueue links to the dealer's latest job of it)
    edges: list[tuple[int, int]]


async def pipeline_jobs(store: JobStore, *, pipeline_id: int | None = None,
                        dealer_id: str | None = None) -> PipelineJobs | None:
    """Pipeline *pipeline_id*, or else *dealer_id*'s newest, with its jobs and edges; None
    when there is no such pipeline."""

    async def tx(conn: AsyncConnection) -> PipelineJobs | None:
        wanted = pipeline_id
        if wanted is None:
            wanted = (await conn.execute(select(func.max(pipelines.c.id)).where(
                pipelines.c.dealer_id == dealer_id))).scalar()
            if wanted is None:
                return None
        found = await _with_jobs(conn, select(pipelines).where(pipelines.c.id == wanted))
        if not found:
            return None
        ids = [j.id for j in found[0].jobs]
        edges = [(r.parent_id, r.child_id) for r in await conn.execute(
            select(job_deps.c.parent_id, job_deps.c.child_id).where(
                job_deps.c.child_id.in_(ids)))]
        return PipelineJobs(found[0], edges)

    return await store.db.run(tx, write=False)
