"""Outcomes of runs: success (and the promotion of children), failure (and the blocking of
descendants), retry later, and release (a stopping worker hands a job back uncharged).

Every write names its claim (job id and fencing token, see idlists.at_claims): a late run
whose job was cancelled, rescued or claimed again since writes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.config import BreakerConfig
from dealertui.model import ClaimRequest, CompletionResult, JobOutcome, JobState
from dealertui.store import breakers, claims, fastpath, graphops, tallies
from dealertui.store.graphops import Event
from dealertui.store.idlists import at_claims, claims_params
from dealertui.store.schema import jobs


async def record(
    conn: AsyncConnection,
    worker_id: str,
    *,
    succeeded: Sequence[tuple[int, int]],
    failed: Sequence[JobOutcome],
    retry: Sequence[JobOutcome],
    release: Sequence[tuple[int, int]],
    release_reason: str | None,
    breaker_cfg: BreakerConfig,
    now: float,
) -> CompletionResult:
    """Record a batch of outcomes in the caller's transaction (JobStore.finish tells the
    rules): successes promote children, failures block descendants, retries wait, releases
    hand jobs back uncharged; one not at its claim any more lands nowhere."""
    ok: list[int] = []
    landed: set[tuple[int, int]] = set()
    if succeeded:
        # the hot path: one UPDATE … RETURNING, events built in the database
        rows = await fastpath.fetch(
            conn,
            f"""
            UPDATE jobs SET state = 'succeeded', finished_at = :now,
                   updated_at = :now, locked_by = NULL, locked_until = NULL,
                   last_error = NULL
            WHERE {at_claims(conn)} AND state = 'running' AND locked_by = :worker
            RETURNING id, claim_seq
            """,
            {**claims_params(conn, succeeded), "now": now, "worker": worker_id},
        )
        ok = [r[0] for r in rows]
        landed.update((r[0], r[1]) for r in rows)
        # no job_events row: the job row records the happy path (started_at, finished_at,
        # worker, attempts), and outcome_tallies counts it
    handed_back: list[int] = []
    if release:
        back = await conn.execute(
            text(
                f"""
                UPDATE jobs SET state = 'retrying', run_after = :now, updated_at = :now,
                       attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                       locked_by = NULL, locked_until = NULL, last_error = :reason
                WHERE {at_claims(conn)} AND state = 'running' AND locked_by = :worker
                RETURNING id, claim_seq
                """
            ),
            {**claims_params(conn, release), "now": now, "worker": worker_id,
             "reason": release_reason},
        )
        handed = back.all()
        handed_back = [r.id for r in handed]
        landed.update((r.id, r.claim_seq) for r in handed)
        await graphops.insert_events_for(
            conn, handed_back, JobState.RUNNING, JobState.RETRYING, at=now,
            worker=worker_id, message=f"released: {release_reason or 'worker stopped'}",
        )
    others = [o.claim for o in (*failed, *retry)]
    held: dict[int, Any] = {}
    if others:
        await graphops.lock_rows(conn, [c.job_id for c in others])
        held = {
            r.id: r
            for r in await conn.execute(
                text(
                    f"""
                    SELECT id, dealer_id, job_type, attempts, max_attempts, claim_seq
                    FROM jobs
                    WHERE {at_claims(conn)} AND state = 'running'
                      AND locked_by = :worker
                    """
                ),
                {**claims_params(conn, others), "worker": worker_id},
            )
        }
    # (held by id, so an outcome of an older claim of a held job is told apart here)
    held_claims = {(r.id, r.claim_seq) for r in held.values()}
    events: list[Event] = []
    retrying, dead = [], list(o for o in failed if o.claim in held_claims)
    for o in retry:
        if o.claim not in held_claims:
            continue
        if held[o.job_id].attempts < held[o.job_id].max_attempts:
            retrying.append(o)
        else:
            dead.append(o)
    if retrying:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == bindparam("jid"))
            .values(
                state=JobState.RETRYING.value,
                run_after=bindparam("run_after"),
                last_error=bindparam("err"),
                updated_at=now,
                finished_at=now,
                locked_by=None,
                locked_until=None,
                ready_at=None,
            ),
            [
                {"jid": o.job_id, "run_after": now + max(o.delay_s, 0.0), "err": o.error}
                for o in retrying
            ],
        )
        events += [
            Event(o.job_id, held[o.job_id].dealer_id, held[o.job_id].job_type,
                  JobState.RUNNING, JobState.RETRYING, held[o.job_id].attempts, o.error,
                  f"retry in {max(o.delay_s, 0.0):.1f}s")
            for o in retrying
        ]
    blocked: list[int] = []
    if dead:
        fail_events, blocked = await fail_held(
            conn, [(o.job_id, o.error) for o in dead], held, now
        )
        events += fail_events
    promoted = await graphops.promote_children(conn, ok, now=now, worker=worker_id)
    await graphops.insert_events(conn, events, at=now, worker=worker_id)
    failures = [(held[o.job_id].dealer_id, held[o.job_id].job_type)
                for o in (*retrying, *dead)]
    await breakers.record(
        conn, breaker_cfg, succeeded_ids=ok, failed=failures, now=now
    )
    await tallies.add(conn, worker_id, succeeded=len(ok), failed=len(dead),
                      retried=len(retrying), now=now)
    landed.update(o.claim for o in (*retrying, *dead))
    return CompletionResult(
        done=[
            *ok, *(o.job_id for o in retrying), *(o.job_id for o in dead), *handed_back
        ],
        promoted=promoted,
        blocked=blocked,
        failed=[o.job_id for o in dead],
        landed=landed,
        blocked_as={e.job_id: (e.dealer_id, e.job_type) for e in events
                    if e.to_state == JobState.BLOCKED},
    )


async def record_then_claim(
    conn: AsyncConnection,
    worker_id: str,
    *,
    succeeded: Sequence[tuple[int, int]],
    failed: Sequence[JobOutcome],
    retry: Sequence[JobOutcome],
    release: Sequence[tuple[int, int]],
    release_reason: str | None,
    then_claim: ClaimRequest | None,
    breaker_cfg: BreakerConfig,
    now: float,
) -> CompletionResult:
    """`record` (when there is any outcome), then, with *then_claim*, a claim in the same
    transaction: after the outcomes, so it sees the children they promoted."""
    done = CompletionResult([])
    if succeeded or failed or retry or release:
        done = await record(conn, worker_id, succeeded=succeeded, failed=failed, retry=retry,
                            release=release, release_reason=release_reason,
                            breaker_cfg=breaker_cfg, now=now)
    if then_claim is None or then_claim.limit <= 0:
        return done
    claimed = await claims.claim(conn, worker_id, then_claim, now, breaker_cfg)
    return dataclasses.replace(done, claimed=claimed)


async def fail_held(
    conn: AsyncConnection,
    outcomes: Sequence[tuple[int, str | None]],
    held: Mapping[int, Any],
    now: float,
) -> tuple[list[Event], list[int]]:
    """Fail each of *outcomes* (job id, error), running as in *held* (its rows), and block
    its descendants; (events, ids blocked). Used by finish and by the lease rescue."""
    await conn.execute(
        update(jobs)
        .where(jobs.c.id == bindparam("jid"))
        .values(
            state=JobState.FAILED.value,
            last_error=bindparam("err"),
            updated_at=now,
            finished_at=now,
            locked_by=None,
            locked_until=None,
            ready_at=None,
        ),
        [{"jid": jid, "err": err} for jid, err in outcomes],
    )
    events: list[Event] = []
    blocked: list[int] = []
    for jid, err in outcomes:
        h = held[jid]
        events.append(
            Event(jid, h.dealer_id, h.job_type, JobState.RUNNING, JobState.FAILED,
                  h.attempts, err)
        )
        below = await graphops.block_descendants(
            conn, jid, f"{h.job_type} #{jid} failed", now=now
        )
        events += below
        blocked += [e.job_id for e in below]
    return events, blocked
