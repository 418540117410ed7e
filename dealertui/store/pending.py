"""Whether a dealer's pipeline is still pending, and settling the ones that are not.

A pipeline is pending while one of its jobs will still run (waiting, ready, running,
retrying); a pipeline with blocked jobs waits for an operator, not for the engine, so a new
one may start beside it. A pipeline found with no job left to run is settled: its row gets
the time its last job finished and its worst outcome, so later looks (enqueue, retention)
read only the pipelines still open.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import UNFINISHED_STATES, JobState
from dealertui.store.idlists import in_list, list_value, one_of
from dealertui.store.schema import pipelines


async def lock_dealers(conn: AsyncConnection, dealer_ids: Sequence[str]) -> None:
    """Serialise enqueues per dealer until the transaction ends. SQLite needs nothing: the
    transaction already holds the database's one write lock (BEGIN IMMEDIATE)."""
    if conn.dialect.name != "postgresql":
        return
    # Advisory, not FOR UPDATE on the dealer rows: claims update dealers.last_served_at
    # and must not queue behind an enqueue. Sorted, so two enqueues never deadlock.
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(7262002, hashtext(d)) "
             "FROM unnest(CAST(:ids AS text[])) AS d ORDER BY d"),
        {"ids": sorted(dealer_ids)},
    )


async def pending(
    conn: AsyncConnection, dealer_ids: Sequence[str], types_key: str, *, now: float
) -> dict[str, tuple[int, int]]:
    """dealer -> (pipeline id, jobs still to run) of its oldest pipeline of the job types
    *types_key* that has a job still to run. Pipelines found settled on the way are marked
    so (see settle), so the next look reads only the ones still open."""
    open_rows = (await conn.execute(
        select(pipelines.c.id, pipelines.c.dealer_id).where(
            one_of(conn, "pipelines.dealer_id", dealer_ids),
            pipelines.c.types == types_key, pipelines.c.settled_at.is_(None),
        ).order_by(pipelines.c.id)
    )).all()
    if not open_rows:
        return {}
    left = await settle(conn, [r.id for r in open_rows], now=now)
    found: dict[str, tuple[int, int]] = {}
    for r in open_rows:
        if left.get(r.id) and r.dealer_id not in found:
            found[r.dealer_id] = (r.id, left[r.id])
    return found


#: the worst outcome names a settled pipeline (retention keeps it as long as that state says)
OUTCOME_ORDER = (JobState.FAILED, JobState.BLOCKED, JobState.CANCELLED, JobState.SKIPPED,
                  JobState.SUCCEEDED)


def jobs_of(dialect: str) -> str:
    """`JOIN <a pipeline's jobs, as j> ...` of the pipelines p, by the primary key's range.
    Postgres must be told to scan that range per pipeline (LATERAL, kept a subquery by
    OFFSET 0): left to itself it hash-joins the pipelines with a sequential scan of every
    job (25 ms a page of 200 at 100,000 jobs, growing with the history)."""
    if dialect == "postgresql":
        return ("JOIN LATERAL (SELECT id, state, finished_at, updated_at FROM jobs "
                "WHERE id BETWEEN p.first_job_id AND p.last_job_id "
                "AND pipeline_id = p.id OFFSET 0) j ON true")
    return "JOIN jobs j ON j.id BETWEEN p.first_job_id AND p.last_job_id AND j.pipeline_id = p.id"


async def settle(
    conn: AsyncConnection, pipeline_ids: Sequence[int], *, now: float
) -> dict[int, int]:
    """pipeline -> jobs still to run, for *pipeline_ids*; the ones with none get settled_at
    (when their last job finished) and outcome (their worst state)."""
    if not pipeline_ids:
        return {}
    rows = await conn.execute(text(
        "SELECT p.id, j.state, count(*) AS n, max(coalesce(j.finished_at, j.updated_at)) AS at "
        f"FROM pipelines p {jobs_of(conn.dialect.name)} WHERE {in_list(conn, 'p.id', 'pids')} "
        "GROUP BY p.id, j.state"
    ), {"pids": list_value(conn, pipeline_ids)})
    left: dict[int, int] = dict.fromkeys(pipeline_ids, 0)
    states: dict[int, set[str]] = {}
    last: dict[int, float] = {}
    for pid, state, n, at in rows:
        if state in UNFINISHED_STATES:
            left[pid] += n
        states.setdefault(pid, set()).add(state)
        last[pid] = max(last.get(pid, 0.0), at or 0.0)
    done = [
        {"pid": pid, "at": last.get(pid, now),
         "outcome": next((s.value for s in OUTCOME_ORDER if s in states.get(pid, ())),
                         JobState.SUCCEEDED.value)}
        for pid, n in left.items() if n == 0
    ]
    if done:
        await conn.execute(text(
            "UPDATE pipelines SET settled_at = :at, outcome = :outcome WHERE id = :pid"
        ), done)
    return left
