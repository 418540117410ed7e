"""Leases: a worker extends the leases of the jobs it runs; jobs whose lease expired are
taken back (rescue), with the attempt they were on counted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import ActionResult, Claim, JobState
from dealertui.store import audit, dealerops, graphops
from dealertui.store.graphops import Event
from dealertui.store.idlists import at_claims, claims_params
from dealertui.store.outcomes import fail_held
from dealertui.store.schema import workers


async def extend(
    conn: AsyncConnection, worker_id: str, claims_held: Sequence[tuple[int, int]],
    *, until: float, now: float,
) -> list[Claim]:
    """Push the lease of each of *claims_held* that *worker_id* still runs under that claim
    to *until*; heartbeat the worker. Returns those claims: one the worker runs but that is
    missing was taken from it (cancelled, rescued, skipped, or the job claimed again since),
    and its handler should stop.

    Not written to job_events: a lease extension is not a transition, and one row per job
    per heartbeat would drown the audit trail.
    """
    held: list[Claim] = []
    if claims_held:
        rows = await conn.execute(
            text(
                f"""
                UPDATE jobs SET locked_until = :until
                WHERE {at_claims(conn)} AND state = 'running' AND locked_by = :worker
                RETURNING id, claim_seq
                """
            ),
            {**claims_params(conn, claims_held), "until": until, "worker": worker_id},
        )
        held = [Claim(r[0], r[1]) for r in rows]
    await conn.execute(update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now))
    return held


async def rescue_expired(
    conn: AsyncConnection,
    *,
    older_than_s: float | None,
    worker_id: str | None,
    locked_by: str | None,
    audit_by: str | None,
    now: float,
) -> ActionResult:
    """Take back running jobs whose lease expired (or that started > older_than_s ago).

    The attempt they were on counts: a job with attempts left is ready again, one without
    fails and blocks its descendants. *locked_by* also takes back every running job of
    that worker id, expired or not (a worker restarting after an outage reclaims its own).
    Workers silent for a day are forgotten in the same transaction (dealerops).
    """
    cond = "locked_until < :now"
    params: dict[str, Any] = {"now": now}
    if older_than_s is not None:
        cond = f"({cond} OR started_at < :cutoff)"
        params["cutoff"] = now - older_than_s
    if locked_by is not None:
        cond = f"({cond} OR locked_by = :locked_by)"
        params["locked_by"] = locked_by
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    rows = (
        await conn.execute(
            text(
                "SELECT id, dealer_id, job_type, attempts, max_attempts, locked_by "
                f"FROM jobs WHERE state = 'running' AND {cond} ORDER BY id{lock}"
            ),
            params,
        )
    ).all()
    held = {r.id: r for r in rows}
    again = [r.id for r in rows if r.attempts < r.max_attempts]
    exhausted = [r.id for r in rows if r.attempts >= r.max_attempts]
    events: list[Event] = []
    if again:
        await conn.execute(
            text(
                """
                UPDATE jobs SET state = 'ready', ready_at = :now, run_after = :now,
                       updated_at = :now, locked_by = NULL, locked_until = NULL,
                       last_error = 'lease expired'
                WHERE id IN :ids
                """
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": again, "now": now},
        )
        events += [
            Event(i, held[i].dealer_id, held[i].job_type, JobState.RUNNING,
                  JobState.READY, held[i].attempts, "lease expired",
                  f"lease of {held[i].locked_by} expired")
            for i in again
        ]
    followers: list[int] = []
    if exhausted:
        fail_events, followers = await fail_held(
            conn, [(i, "lease expired; no attempts left") for i in exhausted], held, now,
        )
        events += fail_events
    await graphops.insert_events(conn, events, at=now, worker=worker_id)
    await dealerops.forget_dead_workers(conn, now)
    if again or exhausted:
        await audit.record(
            conn, by=audit_by, action="reset-stuck", reason=None, at=now,
            job_ids=again + exhausted,
            target="stuck jobs" + (f" (older than {older_than_s:g}s)"
                                   if older_than_s is not None else ""),
        )
    return ActionResult(changed=again + exhausted, followers=followers)
