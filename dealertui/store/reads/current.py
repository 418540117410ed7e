"""The jobs that matter now, read without touching the finished history: every open job
(through the partial indexes on jobs, one query per index) and the newest job of each dealer
and type (through newest_jobs). What status, the console and health count is these, so their
cost grows with unfinished work and the number of lanes, not with every job ever run.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import TERMINAL_STATES, Job
from dealertui.store.idlists import one_of, sql
from dealertui.store.reads.jobs import job_row
from dealertui.store.schema import job_deps, jobs
from dealertui.store.states import OPEN_STATES, as_sql

# Each predicate is the exact predicate of one partial index of jobs (schema.py): a planner
# uses a partial index only where the query implies its predicate, and an IN list of all open
# states implies none of them (it reads the whole table instead).
# SQLite, without statistics, would rather read ix_jobs_dealer_type in GROUP BY order (every
# job ever run) than sort a partial index's few rows: INDEXED BY holds it to the index.
_OPEN_BY_INDEX = (
    ("state = 'ready'", "ix_jobs_ready"), ("state IN ('waiting', 'blocked')", "ix_jobs_held"),
    ("state = 'retrying'", "ix_jobs_due_retry"), ("state = 'running'", "ix_jobs_running_dealer"),
)


def _jobs_by(conn: AsyncConnection, index: str) -> str:
    return f"jobs INDEXED BY {index}" if conn.dialect.name == "sqlite" else "jobs"


def _open_counts(conn: AsyncConnection) -> TextClause:
    return sql(" UNION ALL ".join(
        f"SELECT dealer_id, job_type, state, count(*) AS n FROM {_jobs_by(conn, ix)} "
        f"WHERE {p} GROUP BY dealer_id, job_type, state" for p, ix in _OPEN_BY_INDEX
    ))
_NEWEST_FINISHED = text(
    "SELECT j.dealer_id, j.job_type, j.state, 1 FROM newest_jobs n "
    f"JOIN jobs j ON j.id = n.job_id WHERE j.state IN {as_sql(TERMINAL_STATES)}"
)
# a change here must change the list above
assert sorted(s for p, _ in _OPEN_BY_INDEX for s in OPEN_STATES if f"'{s}'" in p) == sorted(
    OPEN_STATES)


class Count(NamedTuple):
    dealer_id: str
    job_type: str
    state: str
    n: int


async def current_counts(conn: AsyncConnection) -> list[Count]:
    """Jobs by dealer, type and state: every open job, and each finished one that is still the
    newest of its dealer and type (what the lanes show)."""
    out = [Count(*r) for r in await conn.execute(_open_counts(conn))]
    out += [Count(*r) for r in await conn.execute(_NEWEST_FINISHED)]
    return out



async def open_jobs(
    conn: AsyncConnection, dealers: list[str] | None = None,
) -> tuple[list[Job], list[Job], list[tuple[int, int]]]:
    """(every open job, of *dealers* when given; the finished parents they wait on; the
    edges (parent, child) into the open jobs): what `--run-once --dry-run` plans from, read
    through the partial indexes and the dependency index, never the whole history."""
    found: list[Job] = []
    for predicate, _ in _OPEN_BY_INDEX:
        q = select(jobs).where(text(predicate))
        if dealers is not None:
            q = q.where(one_of(conn, "dealer_id", dealers))
        found += [job_row(r) for r in await conn.execute(q)]
    found.sort(key=lambda j: j.id)
    ids = {j.id for j in found}
    edges = [(r.parent_id, r.child_id) for r in await conn.execute(
        select(job_deps.c.parent_id, job_deps.c.child_id).where(
            one_of(conn, "child_id", sorted(ids))))] if ids else []
    missing = sorted({p for p, _ in edges if p not in ids})
    parents = [job_row(r) for r in await conn.execute(
        select(jobs).where(one_of(conn, "id", missing)))] if missing else []
    return found, parents, edges
