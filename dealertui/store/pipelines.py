"""Pipelines: the jobs one enqueue made for one dealer, named by the id of the first of them.

`jobs.pipeline_id` records it from schema 4 on. A job enqueued before has none; its pipeline
is then told the way enqueue made it: the dealer's jobs inserted in the same transaction,
which share one created_at.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.errors import UsageError
from dealertui.store.schema import jobs


async def _members(conn: AsyncConnection, anchor: Any) -> list[int]:
    """Ids of the jobs in the pipeline of the job row *anchor*, in id order."""
    same = (
        jobs.c.pipeline_id == anchor.pipeline_id
        if anchor.pipeline_id is not None
        else (jobs.c.pipeline_id.is_(None)) & (jobs.c.created_at == anchor.created_at)
    )
    return list((await conn.execute(
        select(jobs.c.id).where(jobs.c.dealer_id == anchor.dealer_id, same).order_by(jobs.c.id)
    )).scalars())


async def _row(conn: AsyncConnection, job_id: int) -> Any:
    return (await conn.execute(
        select(jobs.c.id, jobs.c.dealer_id, jobs.c.pipeline_id, jobs.c.created_at)
        .where(jobs.c.id == job_id)
    )).first()


async def resolve(
    conn: AsyncConnection, *, dealer_id: str | None, pipeline_id: int | None
) -> tuple[int | None, list[int]]:
    """(pipeline id, its job ids): pipeline *pipeline_id* (which must be *dealer_id*'s when
    both are given), else *dealer_id*'s newest pipeline; (None, []) for a dealer without
    jobs. A *pipeline_id* that names no pipeline is a UsageError."""
    if pipeline_id is None:
        newest = (await conn.execute(
            select(func.max(jobs.c.id)).where(jobs.c.dealer_id == dealer_id)
        )).scalar()
        if newest is None:
            return None, []
        members = await _members(conn, await _row(conn, newest))
        return members[0], members
    anchor = await _row(conn, pipeline_id)
    if anchor is None:
        raise UsageError(f"there is no pipeline {pipeline_id} (a pipeline's id is the id of "
                         "the first job of one enqueue for one dealer).")
    members = await _members(conn, anchor)
    if members[0] != pipeline_id:
        raise UsageError(f"there is no pipeline {pipeline_id}; job {pipeline_id} is in "
                         f"pipeline {members[0]}.")
    if dealer_id is not None and anchor.dealer_id != dealer_id:
        raise UsageError(f"pipeline {pipeline_id} is dealer {anchor.dealer_id}'s, "
                         f"not {dealer_id}'s.")
    return pipeline_id, members
