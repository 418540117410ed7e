"""The claim: the one hot statement of the product, in its two dialects.

A claim takes place in two steps inside one writing transaction:

1. pick dealers that have due ready jobs and a free slot (fewer than `per_dealer` running,
   counted across every worker), the worker's own active dealers first, then least recently
   served first. On Postgres the dealer rows are locked `FOR UPDATE SKIP LOCKED`, so two
   workers never fill the same dealer's slots at once and the per-dealer limit holds for the
   whole fleet.
2. in a new statement (so Postgres reads a snapshot taken after those locks), rank each chosen
   dealer's ready jobs by priority, keep as many as the dealer has free slots, interleave the
   dealers (every dealer's first job before anyone's second), and move up to `limit` of them to
   `running` with a lease — one `UPDATE … RETURNING` for the whole batch. Postgres locks the
   picked rows in a MATERIALIZED CTE with `FOR UPDATE SKIP LOCKED`; SQLite runs under
   `BEGIN IMMEDIATE`, which already excludes every other writer.

The RETURNING clause re-checks each claimed job's parents: a job that was `ready` while a
parent had not succeeded is a dependency violation, counted and sent back to waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import ClaimedJob, JobState
from dealertui.store.graphops import Event
from dealertui.store.idlists import in_list, list_value, sql

_DUE_RETRIES = text(
    """
    UPDATE jobs SET state = 'ready', ready_at = run_after, updated_at = :now
    WHERE state = 'retrying' AND run_after <= :now
    RETURNING id, dealer_id, job_type, attempts
    """
)


def _job_filter(
    paused_types: bool, blocked_pairs: bool, only_type: bool
) -> tuple[str, list[Any]]:
    """Conditions on ready jobs `j` shared by both steps: paused types, open breakers."""
    sql, params = [], []
    if paused_types:
        sql.append("AND j.job_type NOT IN :paused_types")
        params.append(bindparam("paused_types", expanding=True))
    if blocked_pairs:
        sql.append("AND (j.dealer_id || ':' || j.job_type) NOT IN :blocked_pairs")
        params.append(bindparam("blocked_pairs", expanding=True))
    if only_type:
        sql.append("AND j.job_type = :only_type")
    return " ".join(sql), params


def _pick_dealers_sql(
    dialect: str, *, only: bool, paused_dealers: bool, job_filter: tuple[str, list[Any]]
) -> Any:
    type_filter, filter_params = job_filter
    where = []
    if only:
        where.append("AND d.id IN :only")
    if paused_dealers:
        where.append("AND d.id NOT IN :paused_dealers")
    lock = "FOR UPDATE OF d SKIP LOCKED" if dialect == "postgresql" else ""
    sql = f"""
        SELECT d.id FROM dealers d
        WHERE d.id IN (
            SELECT j.dealer_id FROM jobs j
            WHERE j.state = 'ready' AND j.run_after <= :now {type_filter})
          AND d.id NOT IN (
            SELECT r.dealer_id FROM jobs r WHERE r.state = 'running'
            GROUP BY r.dealer_id HAVING count(*) >= :per_dealer)
          {" ".join(where)}
        ORDER BY CASE WHEN {in_list(dialect, "d.id", "active")} THEN 0 ELSE 1 END,
                 d.last_served_at, d.id
        LIMIT :n
        {lock}
    """
    params = [*filter_params]
    if only:
        params.append(bindparam("only", expanding=True))
    if paused_dealers:
        params.append(bindparam("paused_dealers", expanding=True))
    return text(sql).bindparams(*params)


def _claim_sql(dialect: str, *, job_filter: tuple[str, list[Any]], dealers_j: str,
               dealers_r: str) -> Any:
    """The claim; *dealers_j* / *dealers_r*: "j.dealer_id / dealer_id is one of :dealers"."""
    type_filter, filter_params = job_filter
    ranked = f"""
        ranked AS (
            SELECT j.id, j.dealer_id, j.priority,
                   row_number() OVER (PARTITION BY j.dealer_id ORDER BY j.priority, j.id) AS rn
            FROM jobs j
            WHERE j.state = 'ready' AND j.run_after <= :now AND {dealers_j}
              {type_filter}
        ),
        busy AS (
            SELECT dealer_id, count(*) AS n FROM jobs
            WHERE state = 'running' AND {dealers_r} GROUP BY dealer_id
        )"""
    pick = """
        SELECT r.id FROM ranked r
        JOIN dealers d ON d.id = r.dealer_id
        LEFT JOIN busy b ON b.dealer_id = r.dealer_id
        WHERE r.rn <= :per_dealer - COALESCE(b.n, 0)
        ORDER BY r.rn, d.last_served_at, r.priority, r.id
        LIMIT :limit"""
    sets = """
        state = 'running', attempts = attempts + 1, locked_by = :worker,
        locked_until = :lease_until, started_at = :now, updated_at = :now, finished_at = NULL"""
    returning = """
        RETURNING jobs.id, jobs.dealer_id, jobs.job_type, jobs.attempts, jobs.max_attempts,
                  jobs.priority, jobs.ready_at, jobs.payload,
                  (SELECT count(*) FROM job_deps dd JOIN jobs p ON p.id = dd.parent_id
                   WHERE dd.child_id = jobs.id
                     AND p.state NOT IN ('succeeded', 'skipped')) AS unmet"""
    if dialect == "postgresql":
        sql = f"""
            WITH {ranked},
            picked AS MATERIALIZED (
                SELECT j.id FROM jobs j
                WHERE j.id IN ({pick}) AND j.state = 'ready'
                FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs SET {sets}
            FROM picked WHERE jobs.id = picked.id
            {returning}
        """
    else:
        sql = f"""
            WITH {ranked}
            UPDATE jobs SET {sets}
            WHERE id IN ({pick})
            {returning}
        """
    return text(sql).bindparams(*filter_params)


async def promote_due_retries(conn: AsyncConnection, now: float) -> list[Event]:
    """`retrying` jobs whose run_after has passed become `ready` again."""
    rows = await conn.execute(_DUE_RETRIES, {"now": now})
    return [
        Event(r.id, r.dealer_id, r.job_type, JobState.RETRYING, JobState.READY, attempt=r.attempts)
        for r in rows
    ]


async def claim_batch(
    conn: AsyncConnection,
    *,
    worker_id: str,
    limit: int,
    per_dealer: int,
    lease_until: float,
    now: float,
    max_dealers: int | None,
    active_dealers: Sequence[str],
    only_dealers: Sequence[str] | None,
    paused_dealers: Sequence[str],
    paused_types: Sequence[str],
    blocked_pairs: Sequence[str] = (),
    only_type: str | None = None,
) -> tuple[list[ClaimedJob], list[int]]:
    """Claim up to *limit* jobs; returns (claimed jobs, ids of dependency violations)."""
    dialect = conn.dialect.name
    active = list(active_dealers)
    n_dealers = limit if max_dealers is None else len(active) + max_dealers
    params: dict[str, Any] = {
        "now": now,
        "per_dealer": per_dealer,
        "active": list_value(dialect, active),
        "n": max(n_dealers, 1),
    }
    if only_dealers is not None:
        params["only"] = list(only_dealers)
    if paused_dealers:
        params["paused_dealers"] = list(paused_dealers)
    job_filter = _job_filter(bool(paused_types), bool(blocked_pairs), only_type is not None)
    filters: dict[str, Any] = {}
    if paused_types:
        filters["paused_types"] = list(paused_types)
    if blocked_pairs:
        filters["blocked_pairs"] = list(blocked_pairs)
    if only_type is not None:
        filters["only_type"] = only_type
    params.update(filters)
    pick_sql = _pick_dealers_sql(
        dialect,
        only=only_dealers is not None,
        paused_dealers=bool(paused_dealers),
        job_filter=job_filter,
    )
    chosen = list((await conn.execute(pick_sql, params)).scalars())
    if max_dealers is not None:
        # Active dealers do not count against the worker's dealer limit; new ones do.
        active_set = set(active)
        mine = [d for d in chosen if d in active_set]
        new = [d for d in chosen if d not in active_set][:max_dealers]
        chosen = mine + new
    if not chosen:
        return [], []
    claim_params: dict[str, Any] = {
        "now": now,
        "dealers": list_value(conn, chosen),
        "per_dealer": per_dealer,
        "limit": limit,
        "worker": worker_id,
        "lease_until": lease_until,
    }
    claim_params.update(filters)
    claim_sql = _claim_sql(dialect, job_filter=job_filter,
                           dealers_j=in_list(conn, "j.dealer_id", "dealers"),
                           dealers_r=in_list(conn, "dealer_id", "dealers"))
    rows = (await conn.execute(claim_sql, claim_params)).all()
    claimed: list[ClaimedJob] = []
    violations: list[int] = []
    # plain tuples, positional: Row attribute access and keyword construction were ~15 µs a
    # job of the engine's own thread (py-spy, `dealertui bench`)
    for job_id, dealer, job_type, attempts, max_attempts, priority, ready_at, payload, unmet in (
        rows
    ):
        if unmet:
            violations.append(job_id)
            continue
        claimed.append(ClaimedJob(job_id, dealer, job_type, attempts, max_attempts, priority,
                                  ready_at, payload))
    if violations:
        await conn.execute(
            text(
                """
                UPDATE jobs SET state = 'waiting', attempts = attempts - 1, locked_by = NULL,
                       locked_until = NULL, started_at = NULL, ready_at = NULL
                WHERE id IN :ids
                """
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": violations},
        )
    served = sorted({c.dealer_id for c in claimed})
    if served:
        await conn.execute(
            sql(f"UPDATE dealers SET last_served_at = :now WHERE {in_list(conn, 'id')}"),
            {"now": now, "ids": list_value(conn, served)},
        )
    return claimed, violations
