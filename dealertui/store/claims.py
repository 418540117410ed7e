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

Paused dealers and types, and breakers that are not closed, are left out of the first batch;
a half-open breaker then admits its trial jobs in a batch of their own (`claim`).

The RETURNING clause re-checks each claimed job's parents: a job that was `ready` while a
parent had not succeeded is a dependency violation, counted and sent back to waiting.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.config import BreakerConfig
from dealertui.model import SATISFIED_STATES, ClaimedJob, ClaimRequest, ClaimResult, JobState
from dealertui.store import breakers, controls, graphops
from dealertui.store.fastpath import fetch
from dealertui.store.graphops import Event
from dealertui.store.idlists import in_list, list_value
from dealertui.store.states import as_sql

_DUE_RETRIES = """
    UPDATE jobs SET state = 'ready', ready_at = run_after, updated_at = :now
    WHERE state = 'retrying' AND run_after <= :now
    RETURNING id, dealer_id, job_type, attempts
"""


def _job_filter(
    dialect: str, paused_types: bool, blocked_pairs: bool, only_type: bool,
    known_types: bool = False,
) -> str:
    """Conditions on ready jobs `j` shared by both steps: paused types, open breakers, the
    types the worker knows."""
    sql = []
    if known_types:
        sql.append(f"AND {in_list(dialect, 'j.job_type', 'known_types')}")
    if paused_types:
        sql.append(f"AND NOT ({in_list(dialect, 'j.job_type', 'paused_types')})")
    if blocked_pairs:
        pair = "(j.dealer_id || ':' || j.job_type)"
        sql.append(f"AND NOT ({in_list(dialect, pair, 'blocked_pairs')})")
    if only_type:
        sql.append("AND j.job_type = :only_type")
    return " ".join(sql)


@functools.lru_cache(maxsize=64)
def _pick_dealers_sql(dialect: str, *, only: bool, paused_dealers: bool, job_filter: str) -> str:
    where = ["AND d.disabled_at IS NULL"]  # a disabled dealer keeps its jobs, none is claimed
    if only:
        where.append(f"AND {in_list(dialect, 'd.id', 'only')}")
    if paused_dealers:
        where.append(f"AND NOT ({in_list(dialect, 'd.id', 'paused_dealers')})")
    lock = "FOR UPDATE OF d SKIP LOCKED" if dialect == "postgresql" else ""
    return f"""
        SELECT d.id FROM dealers d
        WHERE d.id IN (
            SELECT j.dealer_id FROM jobs j
            WHERE j.state = 'ready' AND j.run_after <= :now {job_filter})
          AND d.id NOT IN (
            SELECT r.dealer_id FROM jobs r WHERE r.state = 'running'
            GROUP BY r.dealer_id HAVING count(*) >= :per_dealer)
          {" ".join(where)}
        ORDER BY CASE WHEN {in_list(dialect, "d.id", "active")} THEN 0 ELSE 1 END,
                 d.last_served_at, d.id
        LIMIT :n
        {lock}
    """


_SETS = """
    state = 'running', attempts = attempts + 1, claim_seq = claim_seq + 1, locked_by = :worker,
    worker = :worker,
    locked_until = :lease_until, started_at = :now, updated_at = :now, finished_at = NULL"""


@functools.lru_cache(maxsize=64)
def _claim_sql(dialect: str, *, job_filter: str) -> str:
    """The claim of up to :limit ready jobs of the dealers in :dealers."""
    dealers_j = in_list(dialect, "j.dealer_id", "dealers")
    # SQLite counts every running job (a few per dealer slot, read from the partial index on
    # running jobs): filtered by dealer, it read each chosen dealer's jobs through the
    # (dealer_id, job_type) index instead, 1.5 of the claim's 9 ms for 500 dealers
    busy_filter = ""
    if dialect == "postgresql":
        busy_filter = "AND " + in_list(dialect, "dealer_id", "dealers")
    ranked = f"""
        ranked AS (
            SELECT j.id, j.dealer_id, j.priority,
                   row_number() OVER (PARTITION BY j.dealer_id ORDER BY j.priority, j.id) AS rn
            FROM jobs j
            WHERE j.state = 'ready' AND j.run_after <= :now AND {dealers_j}
              {job_filter}
        ),
        busy AS (
            SELECT dealer_id, count(*) AS n FROM jobs
            WHERE state = 'running' {busy_filter} GROUP BY dealer_id
        )"""
    pick = """
        SELECT r.id FROM ranked r
        JOIN dealers d ON d.id = r.dealer_id
        LEFT JOIN busy b ON b.dealer_id = r.dealer_id
        WHERE r.rn <= :per_dealer - COALESCE(b.n, 0)
        ORDER BY r.rn, d.last_served_at, r.priority, r.id
        LIMIT :limit"""
    columns = f"""
        jobs.id, jobs.dealer_id, jobs.job_type, jobs.attempts, jobs.max_attempts,
        jobs.priority, jobs.ready_at, jobs.payload, jobs.claim_seq,
        (SELECT count(*) FROM job_deps dd JOIN jobs p ON p.id = dd.parent_id
         WHERE dd.child_id = jobs.id AND p.state NOT IN {as_sql(SATISFIED_STATES)}) AS unmet"""
    if dialect == "postgresql":
        sql = f"""
            WITH {ranked},
            -- the chosen ids as one array: as `id IN (pick)`, or joined, the planner (which
            -- thinks few jobs are ready: they are few of a long history, and ANALYZE does
            -- not come for a few thousand rows of a million) compared every ready job with
            -- every chosen one (310 ms a claim at 2,500 dealers and 1,000,000 jobs)
            picked AS MATERIALIZED (
                SELECT j.id FROM jobs j
                WHERE j.id = ANY(ARRAY({pick})) AND j.state = 'ready'
                FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs SET {_SETS}
            FROM picked WHERE jobs.id = picked.id
            RETURNING {columns}
        """
    else:
        # SQLite: read the jobs, then move them (claim_batch) — BEGIN IMMEDIATE already
        # excludes every other writer. One UPDATE … RETURNING costs 9 ms for 500 jobs against
        # 5 ms for the two: SQLite's RETURNING (an ephemeral table, a step per row) is 3.7 ms.
        sql = f"""
            WITH {ranked}
            SELECT {columns} FROM jobs WHERE id IN ({pick})
        """
    return sql


_CLAIM_SQLITE = f"""
    UPDATE jobs SET {_SETS}
    WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'ready'
"""


async def promote_due_retries(conn: AsyncConnection, now: float) -> list[Event]:
    """`retrying` jobs whose run_after has passed become `ready` again."""
    rows = await fetch(conn, _DUE_RETRIES, {"now": now})
    return [
        Event(job_id, dealer_id, job_type, JobState.RETRYING, JobState.READY, attempt=attempts)
        for job_id, dealer_id, job_type, attempts in rows
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
    known_types: Sequence[str] | None = None,
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
        params["only"] = list_value(dialect, only_dealers)
    if paused_dealers:
        params["paused_dealers"] = list_value(dialect, paused_dealers)
    job_filter = _job_filter(dialect, bool(paused_types), bool(blocked_pairs),
                             only_type is not None, known_types is not None)
    filters: dict[str, Any] = {}
    if paused_types:
        filters["paused_types"] = list_value(dialect, paused_types)
    if blocked_pairs:
        filters["blocked_pairs"] = list_value(dialect, blocked_pairs)
    if only_type is not None:
        filters["only_type"] = only_type
    if known_types is not None:
        filters["known_types"] = list_value(dialect, known_types)
    params.update(filters)
    pick_sql = _pick_dealers_sql(
        dialect,
        only=only_dealers is not None,
        paused_dealers=bool(paused_dealers),
        job_filter=job_filter,
    )
    chosen = [r[0] for r in await fetch(conn, pick_sql, params)]
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
        "dealers": list_value(dialect, chosen),
        "per_dealer": per_dealer,
        "limit": limit,
        "worker": worker_id,
        "lease_until": lease_until,
    }
    claim_params.update(filters)
    rows = await fetch(conn, _claim_sql(dialect, job_filter=job_filter), claim_params)
    moved = dialect == "postgresql"  # its claim moved them already; SQLite's only read them
    claimed: list[ClaimedJob] = []
    violations: list[int] = []
    # plain tuples, positional: Row attribute access and keyword construction cost ~15 µs a
    # job of the engine's own thread (py-spy, `dealertui bench`)
    # (SQLite's rows were read before its UPDATE: attempt and token are one ahead of them)
    ahead = 0 if moved else 1
    for (job_id, dealer, job_type, attempts, max_attempts, priority, ready_at, payload, seq,
         unmet) in rows:
        if unmet:
            violations.append(job_id)
            continue
        claimed.append(ClaimedJob(job_id, dealer, job_type, attempts + ahead, max_attempts,
                                  priority, ready_at, payload, seq + ahead))
    if claimed and not moved:
        await fetch(conn, _CLAIM_SQLITE, {**claim_params, "ids": list_value(
            dialect, [c.id for c in claimed])})
    if violations:
        # a job that was ready while a parent had not succeeded goes back to waiting
        # (Postgres had claimed it: its attempt is given back)
        undo = ", attempts = attempts - 1" if moved else ""
        await conn.execute(
            text(
                f"""
                UPDATE jobs SET state = 'waiting', locked_by = NULL, locked_until = NULL,
                       started_at = NULL, ready_at = NULL {undo}
                WHERE id IN :ids
                """
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": violations},
        )
    served = sorted({c.dealer_id for c in claimed})
    if served:
        await fetch(
            conn, f"UPDATE dealers SET last_served_at = :now WHERE {in_list(conn, 'id')}",
            {"now": now, "ids": list_value(conn, served)},
        )
    return claimed, violations


async def claim(
    conn: AsyncConnection, worker_id: str, request: ClaimRequest, now: float,
    breaker_cfg: BreakerConfig,
) -> ClaimResult:
    """Move up to `request.limit` due ready jobs to running under a lease held by *worker_id*
    (JobStore.claim tells the rules), in the caller's transaction."""
    limit, per_dealer, only_dealers = request.limit, request.per_dealer, request.only_dealers
    paused = await controls.paused_keys(conn)
    due = await promote_due_retries(conn, now)
    await graphops.insert_events(conn, due, at=now, worker=worker_id)
    if ("global", "") in paused:
        return ClaimResult([])
    g = await breakers.gate(conn, breaker_cfg, now)
    common: dict[str, Any] = {
        "worker_id": worker_id,
        "per_dealer": per_dealer,
        "lease_until": now + request.lease_s,
        "now": now,
        "max_dealers": request.max_dealers,
        "active_dealers": request.active_dealers,
        "paused_dealers": [k for s, k in paused if s == "dealer"],
        "known_types": request.job_types,
    }
    paused_types = [k for s, k in paused if s == "type"]
    claimed, violations = await claim_batch(
        conn,
        limit=limit,
        only_dealers=only_dealers,
        paused_types=sorted({*paused_types, *g.blocked_types}),
        blocked_pairs=g.blocked_pairs,
        **common,
    )
    # half-open breakers: admit at most their remaining trial jobs, key by key
    for dealer_id, job_type, slots in g.trials:
        room = min(slots, limit - len(claimed))
        if room <= 0 or job_type in paused_types:
            continue
        if dealer_id is not None and job_type in g.blocked_types:
            continue  # the shared breaker of the type is not closed: no trial
        if dealer_id is not None and only_dealers is not None and (
            dealer_id not in only_dealers
        ):
            continue
        pairs = [p for p in g.blocked_pairs if p != f"{dealer_id}:{job_type}"]
        extra, more_violations = await claim_batch(
            conn,
            limit=room,
            only_dealers=[dealer_id] if dealer_id is not None else only_dealers,
            paused_types=paused_types,
            blocked_pairs=pairs,
            only_type=job_type,
            **common,
        )
        if extra:
            await breakers.count_trials(conn, dealer_id, job_type, len(extra), now)
        claimed += extra
        violations += more_violations
    # no job_events row for a claim: started_at, worker and attempts on the row record it
    # the claim put violating jobs back to waiting; record both of their moves
    await graphops.insert_events_for(
        conn, violations, JobState.READY, JobState.WAITING, at=now, worker=worker_id,
        message="dependency violation: a parent had not succeeded",
    )
    return ClaimResult(claimed, len(violations))
