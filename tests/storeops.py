"""A worker's writes for store tests that drive jobs by id, not through a real claim.

The store takes a run's outcomes by claim (job id and fencing token). These helpers look up
the token each job carries now and report as its current holder would, so a test can say
"worker w1 finished job 7" in one line; the store's own checks (running, held by that worker,
that token) still decide what lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from dealertui.model import Claim, CompletionResult, JobOutcome
from dealertui.store import JobStore, migrate
from dealertui.store.schema import job_events as job_events_table
from dealertui.store.schema import jobs


async def tokens(store: JobStore, job_ids: Sequence[int]) -> dict[int, int]:
    """Each job's fencing token as the row has it now."""
    if not job_ids:
        return {}
    async with store.db.engine.connect() as conn:
        rows = await conn.execute(
            select(jobs.c.id, jobs.c.claim_seq).where(jobs.c.id.in_(list(job_ids)))
        )
        return {r.id: r.claim_seq for r in rows}


async def claims(store: JobStore, job_ids: Sequence[int]) -> list[Claim]:
    now = await tokens(store, job_ids)
    return [Claim(i, now.get(i, -1)) for i in job_ids]


async def finish(
    store: JobStore,
    worker_id: str,
    *,
    succeeded: Sequence[int] = (),
    failed: Sequence[JobOutcome] = (),
    retry: Sequence[JobOutcome] = (),
    release: Sequence[int] = (),
    **kw: Any,
) -> CompletionResult:
    """`store.finish` with each job's current token filled in."""
    now = await tokens(store, [*succeeded, *release, *(o.job_id for o in (*failed, *retry))])
    return await store.finish(
        worker_id,
        succeeded=[Claim(i, now.get(i, -1)) for i in succeeded],
        failed=[replace(o, token=now.get(o.job_id, -1)) for o in failed],
        retry=[replace(o, token=now.get(o.job_id, -1)) for o in retry],
        release=[Claim(i, now.get(i, -1)) for i in release],
        **kw,
    )


async def complete(store: JobStore, worker_id: str, job_ids: Sequence[int]) -> CompletionResult:
    return await finish(store, worker_id, succeeded=job_ids)


async def fail(store: JobStore, worker_id: str, outcomes: Sequence[JobOutcome]) -> CompletionResult:
    return await finish(store, worker_id, failed=outcomes)


async def schedule_retry(
    store: JobStore, worker_id: str, outcomes: Sequence[JobOutcome]
) -> CompletionResult:
    return await finish(store, worker_id, retry=outcomes)


async def extend_leases(store: JobStore, worker_id: str, lease_s: float) -> list[Claim]:
    """A heartbeat of a worker that holds every job now running under its name."""
    async with store.db.engine.connect() as conn:
        rows = await conn.execute(
            select(jobs.c.id, jobs.c.claim_seq).where(
                jobs.c.state == "running", jobs.c.locked_by == worker_id
            )
        )
        held = [Claim(r.id, r.claim_seq) for r in rows]
    return await store.extend_leases(worker_id, held, lease_s)


async def job_events(store: JobStore, job_id: int) -> list[dict[str, Any]]:
    """A job's timeline as its detail shows it, oldest first: the job_events rows with the
    happy-path moves its row records (store/reads/timeline.py)."""
    from dealertui.store.reads import job_detail

    detail = await job_detail(store, job_id)
    return detail.events if detail is not None else []


async def stored_events(store: JobStore, job_id: int) -> list[dict[str, Any]]:
    """A job's job_events rows only, oldest first."""
    async with store.db.engine.connect() as conn:
        rows = await conn.execute(
            select(job_events_table).where(job_events_table.c.job_id == job_id)
            .order_by(job_events_table.c.id)
        )
        return [dict(r._mapping) for r in rows]


async def schema_version(store: JobStore) -> int | None:
    """meta.schema_version as the database has it (None: no dealertui schema)."""
    return await store.db.run(lambda conn: migrate.read_version(conn, store.db), write=False)
