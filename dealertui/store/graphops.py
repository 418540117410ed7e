"""Statements shared by several transitions: events, promotion, blocking, re-arming.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import SATISFIED_STATES, JobState
from dealertui.store.fastpath import fetch
from dealertui.store.idlists import in_list, list_value, sql
from dealertui.store.schema import job_events
from dealertui.store.states import DEAD_STATES, PENDING_STATES, as_sql

_SATISFIED = as_sql(SATISFIED_STATES)
_DEAD = as_sql(DEAD_STATES)
_PENDING = as_sql(PENDING_STATES)


@dataclass(frozen=True, slots=True)
class Event:
    job_id: int
    dealer_id: str
    job_type: str
    from_state: str | None
    to_state: str
    attempt: int | None = None
    error: str | None = None
    message: str | None = None


async def insert_claim_events(conn: AsyncConnection, job_ids: Sequence[int]) -> None:
    """The claim (ready -> running) of each job in *job_ids*, from its row: a claim writes no
    row of its own (the happy path, docs/design.md), so a run that ends any other way than in
    success writes its claim beside its end, and the job's timeline keeps every attempt."""
    if not job_ids:
        return
    await fetch(
        conn,
        f"""
        INSERT INTO job_events
            (job_id, dealer_id, job_type, at, from_state, to_state, worker, attempt)
        SELECT id, dealer_id, job_type, started_at, 'ready', 'running', worker, attempts
        FROM jobs WHERE {in_list(conn, 'id')} AND started_at IS NOT NULL
        """,
        {"ids": list_value(conn, sorted(set(job_ids)))},
    )


async def insert_events(
    conn: AsyncConnection, events: Sequence[Event], *, at: float, worker: str | None
) -> None:
    """Write one job_events row per transition (one executemany round trip), after the claim
    of each job the transitions take out of running."""
    if not events:
        return
    await insert_claim_events(
        conn, [e.job_id for e in events if e.from_state == JobState.RUNNING]
    )
    await conn.execute(
        insert(job_events),
        [
            {
                "job_id": e.job_id,
                "dealer_id": e.dealer_id,
                "job_type": e.job_type,
                "at": at,
                "from_state": e.from_state,
                "to_state": e.to_state,
                "worker": worker,
                "attempt": e.attempt,
                "error": e.error,
                "message": e.message,
            }
            for e in events
        ],
    )


def _ids(name: str = "ids") -> Any:
    return bindparam(name, expanding=True)


async def lock_rows(conn: AsyncConnection, ids: Iterable[int]) -> None:
    """On Postgres, lock job rows in id order before reading their parents' states.

    Two transactions that each complete one parent of the same child would otherwise both see
    the other parent as still running (READ COMMITTED) and neither would promote the child.
    Locking the child first makes the second one wait and then read a fresh snapshot.
    SQLite needs nothing: BEGIN IMMEDIATE already serialises writers.
    """
    id_list = sorted(set(ids))
    if not id_list or conn.dialect.name == "sqlite":
        return
    await conn.execute(
        sql(f"SELECT id FROM jobs WHERE {in_list(conn, 'id')} ORDER BY id FOR UPDATE"),
        {"ids": list_value(conn, id_list)},
    )


_PROMOTE = f"""
    UPDATE jobs SET state = 'ready', ready_at = :now, updated_at = :now,
           run_after = CASE WHEN run_after > :now THEN run_after ELSE :now END
    WHERE {{targets}} AND state = 'waiting'
      AND NOT EXISTS (
        SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.parent_id
        WHERE d.child_id = jobs.id AND p.state NOT IN {_SATISFIED})
    RETURNING id
"""


async def insert_events_for(
    conn: AsyncConnection,
    job_ids: Sequence[int],
    from_state: str | None,
    to_state: str,
    *,
    at: float,
    worker: str | None,
    message: str | None = None,
) -> None:
    """One job_events row per job in *job_ids*, built inside the database (INSERT … SELECT).

    The hot transitions (claim, success, promotion) use this: binding 1,000 rows of
    parameters from Python costs ~11 ms per batch, this a fraction of it.
    """
    if not job_ids:
        return
    if from_state == JobState.RUNNING:
        await insert_claim_events(conn, job_ids)
    await fetch(
        conn,
        f"""
        INSERT INTO job_events
            (job_id, dealer_id, job_type, at, from_state, to_state, worker, attempt, message)
        SELECT id, dealer_id, job_type, :at, :from_state, :to_state, :worker, attempts,
               :message
        FROM jobs WHERE {in_list(conn, 'id')}
        """,
        {
            "ids": list_value(conn, job_ids),
            "at": at,
            "from_state": from_state,
            "to_state": to_state,
            "worker": worker,
            "message": message,
        },
    )


async def promote_children(
    conn: AsyncConnection, parent_ids: Sequence[int], *, now: float, worker: str | None
) -> list[int]:
    """Move waiting children of *parent_ids* whose parents all succeeded to ready (audited)."""
    if not parent_ids:
        return []
    if conn.dialect.name == "sqlite":
        # one statement: BEGIN IMMEDIATE already serialises us against every other writer
        targets = f"id IN (SELECT child_id FROM job_deps WHERE {in_list(conn, 'parent_id')})"
        rows = await fetch(
            conn, _PROMOTE.format(targets=targets),
            {"ids": list_value(conn, parent_ids), "now": now},
        )
        promoted = [r[0] for r in rows]
    else:
        children = (
            await conn.execute(
                sql(f"SELECT DISTINCT child_id FROM job_deps WHERE {in_list(conn, 'parent_id')}"),
                {"ids": list_value(conn, parent_ids)},
            )
        ).scalars().all()
        promoted = await promote_if_satisfied(conn, children, now=now)
    # no job_events row: ready_at on the row records the promotion (the happy path)
    return promoted


async def promote_if_satisfied(
    conn: AsyncConnection, job_ids: Sequence[int], *, now: float
) -> list[int]:
    """Move each waiting job in *job_ids* whose parents all succeeded to ready; returns their
    ids (the caller records the events)."""
    if not job_ids:
        return []
    await lock_rows(conn, job_ids)
    rows = await conn.execute(
        sql(_PROMOTE.format(targets=in_list(conn, "id"))),
        {"ids": list_value(conn, job_ids), "now": now},
    )
    return [r.id for r in rows]


async def descendants(conn: AsyncConnection, root_ids: Sequence[int]) -> list[int]:
    """Ids of every job reachable from *root_ids* through job_deps (roots excluded)."""
    if not root_ids:
        return []
    rows = await conn.execute(
        text(
            """
            WITH RECURSIVE down(id) AS (
                SELECT child_id FROM job_deps WHERE parent_id IN :ids
                UNION
                SELECT d.child_id FROM job_deps d JOIN down ON d.parent_id = down.id
            )
            SELECT id FROM down
            """
        ).bindparams(_ids()),
        {"ids": list(root_ids)},
    )
    return [r.id for r in rows]


async def block_descendants(
    conn: AsyncConnection, root_id: int, reason: str, *, now: float
) -> list[Event]:
    """Mark every unfinished descendant of *root_id* blocked with *reason*."""
    below = await descendants(conn, [root_id])
    if not below:
        return []
    await lock_rows(conn, below)
    # RETURNING gives the new state only; read the old one first (rows are locked/serialised)
    # so that the audit row says which state the job left.
    was = {
        r.id: r.state
        for r in await conn.execute(
            text(
                f"SELECT id, state FROM jobs WHERE id IN :ids AND state IN {_PENDING}"
            ).bindparams(_ids()),
            {"ids": below},
        )
    }
    rows = await conn.execute(
        text(
            f"""
            UPDATE jobs SET state = 'blocked', blocked_reason = :reason, updated_at = :now,
                   ready_at = NULL
            WHERE id IN :ids AND state IN {_PENDING}
            RETURNING id, dealer_id, job_type
            """
        ).bindparams(_ids()),
        {"ids": below, "reason": reason, "now": now},
    )
    return [
        Event(r.id, r.dealer_id, r.job_type, was.get(r.id), JobState.BLOCKED, message=reason)
        for r in rows
    ]


_BLOCK_DEAD_PARENTED = text(
    f"""
    UPDATE jobs SET state = 'blocked', updated_at = :now,
           blocked_reason = (
             SELECT 'parent ' || p.job_type || ' #' || p.id || ' is ' || p.state
             FROM job_deps d JOIN jobs p ON p.id = d.parent_id
             WHERE d.child_id = jobs.id AND p.state IN {_DEAD}
             ORDER BY p.id LIMIT 1)
    WHERE id IN :ids AND state = 'waiting' AND EXISTS (
        SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.parent_id
        WHERE d.child_id = jobs.id AND p.state IN {_DEAD})
    RETURNING id
    """
).bindparams(_ids())


async def rearm(
    conn: AsyncConnection, job_ids: Sequence[int], *, now: float, message: str
) -> list[Event]:
    """Send *job_ids* back to waiting with attempts reset, then to ready or blocked as fits.

    A job some of whose parents are dead (failed, cancelled, blocked, and not re-armed here)
    goes straight back to blocked; one whose parents all succeeded becomes ready.
    """
    if not job_ids:
        return []
    await lock_rows(conn, job_ids)
    before = {
        r.id: r
        for r in await conn.execute(
            text("SELECT id, dealer_id, job_type, state FROM jobs WHERE id IN :ids").bindparams(
                _ids()
            ),
            {"ids": list(job_ids)},
        )
    }
    await conn.execute(
        text(
            """
            UPDATE jobs SET state = 'waiting', attempts = 0, blocked_reason = NULL,
                   run_after = :now, updated_at = :now, finished_at = NULL, ready_at = NULL,
                   locked_by = NULL, locked_until = NULL
            WHERE id IN :ids
            """
        ).bindparams(_ids()),
        {"ids": list(job_ids), "now": now},
    )
    await reopen(conn, job_ids)
    # Repeat: a job blocked here makes its own re-armed children dead-parented too.
    dead_ids: set[int] = set()
    while True:
        dead = await conn.execute(
            _BLOCK_DEAD_PARENTED, {"ids": list(job_ids), "now": now}
        )
        newly = {r.id for r in dead}
        if not newly:
            break
        dead_ids |= newly
    ready_ids = set(await promote_if_satisfied(conn, job_ids, now=now))
    events: list[Event] = []
    for job_id, row in before.items():
        to = (
            JobState.BLOCKED
            if job_id in dead_ids
            else JobState.READY
            if job_id in ready_ids
            else JobState.WAITING
        )
        events.append(Event(job_id, row.dealer_id, row.job_type, row.state, to, message=message))
    return events


async def hold_back(
    conn: AsyncConnection, job_ids: Sequence[int], *, lacking: Iterable[int] = ()
) -> dict[int, str]:
    """Which of *job_ids* re-arming them together would only block again, and why.

    A job with a dead parent (failed, cancelled, blocked) outside *job_ids*, or a parent held
    back itself, cannot run; neither can one in *lacking* (no prerequisite run to link to).
    An action leaves these as they are and says so, instead of counting them as moved.
    """
    held: dict[int, str] = {}
    lacking_ids = sorted(set(lacking))
    if lacking_ids:
        for r in await conn.execute(
            text("SELECT id, blocked_reason FROM jobs WHERE id IN :ids").bindparams(_ids()),
            {"ids": lacking_ids},
        ):
            held[r.id] = r.blocked_reason or "a prerequisite run is missing"
    if not job_ids:
        return held
    wanted = set(job_ids)
    parents: dict[int, list[Any]] = {}
    for r in await conn.execute(
        text(
            "SELECT d.child_id, p.id, p.job_type, p.state FROM job_deps d "
            "JOIN jobs p ON p.id = d.parent_id WHERE d.child_id IN :ids ORDER BY p.id"
        ).bindparams(_ids()),
        {"ids": sorted(wanted)},
    ):
        parents.setdefault(r.child_id, []).append(r)
    changed = True
    while changed:  # a held job holds its re-armed children too
        changed = False
        for child in sorted(wanted - held.keys()):
            for p in parents.get(child, ()):
                if p.id in held or (p.id not in wanted and p.state in DEAD_STATES):
                    held[child] = f"parent {p.job_type} #{p.id} is {p.state}"
                    changed = True
                    break
    return {i: why for i, why in held.items() if i in wanted}


async def reopen(conn: AsyncConnection, job_ids: Sequence[int]) -> None:
    """Clear the settled mark of the pipelines of *job_ids* (an operator made them run)."""
    await conn.execute(
        text("UPDATE pipelines SET settled_at = NULL, outcome = NULL WHERE settled_at IS NOT "
             f"NULL AND id IN (SELECT pipeline_id FROM jobs WHERE "
             f"{in_list(conn, 'jobs.id', 'jids')})"),
        {"jids": list_value(conn, job_ids)},
    )
