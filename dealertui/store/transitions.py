"""Operator transitions: retry, cancel, skip and rerun, each audited with who and why.

Each function runs in the caller's transaction. Re-arming (retry, rerun) leaves alone a job
that would only block again and says why (ActionResult.held).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import ActionResult, JobState
from dealertui.store import audit, graphops, pipelines
from dealertui.store.graphops import Event
from dealertui.store.pipelines import JobTypeRule
from dealertui.store.schema import jobs
from dealertui.store.states import (
    RETRYABLE_BY_ID,
    RETRYABLE_STATES,
    SKIPPABLE_STATES,
    UNCANCELLABLE_STATES,
)


async def retry(
    conn: AsyncConnection,
    rules: Mapping[str, JobTypeRule],
    *,
    job_ids: Sequence[int] | None,
    dealer_id: str | None,
    job_type: str | None,
    by: str | None,
    reason: str | None,
    now: float,
) -> ActionResult:
    """Operator retry: failed/blocked jobs back to ready or waiting, attempts reset.

    Explicit job ids may also be cancelled jobs. Blocked descendants of the retried jobs
    follow them. A job blocked for lack of a prerequisite run is linked again to the
    dealer's latest job of that type.
    """
    q = select(jobs.c.id)
    if job_ids is not None:
        q = q.where(jobs.c.id.in_(list(job_ids)), jobs.c.state.in_(RETRYABLE_BY_ID))
    else:
        q = q.where(jobs.c.state.in_(RETRYABLE_STATES))
    if dealer_id is not None:
        q = q.where(jobs.c.dealer_id == dealer_id)
    if job_type is not None:
        q = q.where(jobs.c.job_type == job_type)
    targets = list((await conn.execute(q.order_by(jobs.c.id))).scalars())
    if not targets:
        return ActionResult([])
    below = await graphops.descendants(conn, targets)
    target_set = set(targets)
    followers = list(
        (
            await conn.execute(
                select(jobs.c.id).where(
                    jobs.c.id.in_(below), jobs.c.state == JobState.BLOCKED
                )
            )
        ).scalars()
    ) if below else []
    followers = [f for f in followers if f not in target_set]
    moved = await rearm_runnable(conn, rules, targets, followers, now=now,
                                 message="operator retry", by=by)
    if moved.changed:
        await audit.record(
            conn, by=by, action="retry", reason=reason, at=now, job_ids=moved.changed,
            target=audit.target(job_ids=job_ids, dealer_id=dealer_id, job_type=job_type),
        )
    return moved


async def rearm_runnable(
    conn: AsyncConnection,
    rules: Mapping[str, JobTypeRule],
    named: Sequence[int],
    followers: Sequence[int],
    *,
    now: float,
    message: str,
    by: str | None,
) -> ActionResult:
    """Re-arm *named* and *followers* (see graphops.rearm), except those that would only
    block again: a named one of those is returned as held, with why. When no named job
    can run, nothing at all is changed (the transaction is rolled back)."""
    everyone = [*named, *followers]
    # a job still lacking a prerequisite run, or with a dead parent outside the set,
    # stays as it is; so do its descendants in the set
    lacking = await pipelines.relink_prerequisites(conn, rules, everyone)
    stuck = await graphops.hold_back(conn, everyone, lacking=lacking)
    held = {i: stuck[i] for i in named if i in stuck}
    arm = [i for i in everyone if i not in stuck]
    events = await graphops.rearm(conn, arm, now=now, message=message)
    # rearm's own check: a parent that died since hold_back read it (Postgres)
    again = {e.job_id for e in events if e.to_state == JobState.BLOCKED}
    if again:
        for j in await conn.execute(
            select(jobs.c.id, jobs.c.blocked_reason).where(jobs.c.id.in_(sorted(again)))
        ):
            if j.id in set(named):
                held[j.id] = j.blocked_reason or "a parent cannot run"
    changed = [i for i in named if i in set(arm) - again]
    if not changed:
        await conn.rollback()  # nothing it could run: no change, no event, no audit row
        return ActionResult([], held=held)
    # a blocked job left as it is names what still holds it, not the parent this action
    # has just re-armed
    still = [{"jid": i, "why": why} for i, why in stuck.items() if i not in lacking]
    if still:
        await conn.execute(
            update(jobs).where(jobs.c.id == bindparam("jid"), jobs.c.state == JobState.BLOCKED)
            .values(blocked_reason=bindparam("why")), still,
        )
    await graphops.insert_events(conn, events, at=now, worker=by)
    return ActionResult(changed=changed, followers=[i for i in followers
                                                    if i in set(arm) - again], held=held)


async def cancel(
    conn: AsyncConnection, job_ids: Sequence[int], *, by: str | None, reason: str | None,
    now: float,
) -> ActionResult:
    """Cancel jobs in any state but succeeded; their waiting descendants become blocked."""
    await graphops.lock_rows(conn, job_ids)
    rows = (
        await conn.execute(
            select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.state).where(
                jobs.c.id.in_(list(job_ids)),
                jobs.c.state.not_in(UNCANCELLABLE_STATES),
            )
        )
    ).all()
    if not rows:
        return ActionResult([])
    ids = [r.id for r in rows]
    await conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(ids))
        .values(
            state=JobState.CANCELLED.value, updated_at=now, finished_at=now,
            locked_by=None, locked_until=None, ready_at=None,
        )
    )
    events = [
        Event(r.id, r.dealer_id, r.job_type, r.state, JobState.CANCELLED,
              message="operator cancel")
        for r in rows
    ]
    followers: list[int] = []
    for r in rows:
        below = await graphops.block_descendants(
            conn, r.id, f"{r.job_type} #{r.id} cancelled", now=now
        )
        events += below
        followers += [e.job_id for e in below]
    await graphops.insert_events(conn, events, at=now, worker=by)
    await audit.record(conn, by=by, action="cancel", reason=reason, at=now, job_ids=ids,
                       target=audit.target(job_ids=ids))
    return ActionResult(changed=ids, followers=followers)


async def skip(
    conn: AsyncConnection, job_ids: Sequence[int], *, reason: str, by: str | None, now: float
) -> ActionResult:
    """Mark jobs `skipped` without running them: their children may run (a skipped parent
    satisfies them), and descendants blocked by them come back. Running and succeeded jobs
    cannot be skipped."""
    await graphops.lock_rows(conn, job_ids)
    rows = (
        await conn.execute(
            select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.state).where(
                jobs.c.id.in_(list(job_ids)),
                jobs.c.state.in_(SKIPPABLE_STATES),
            )
        )
    ).all()
    if not rows:
        return ActionResult([])
    ids = [r.id for r in rows]
    await conn.execute(
        update(jobs).where(jobs.c.id.in_(ids)).values(
            state=JobState.SKIPPED.value, updated_at=now, finished_at=now,
            ready_at=None, blocked_reason=None, locked_by=None, locked_until=None,
        )
    )
    events = [
        Event(r.id, r.dealer_id, r.job_type, r.state, JobState.SKIPPED,
              message=f"skipped: {reason}")
        for r in rows
    ]
    # descendants blocked because of these jobs come back (to ready or waiting)
    below = await graphops.descendants(conn, ids)
    revived = list(
        (await conn.execute(
            select(jobs.c.id).where(jobs.c.id.in_(below), jobs.c.state == JobState.BLOCKED)
        )).scalars()
    ) if below else []
    if revived:
        events += await graphops.rearm(conn, revived, now=now,
                                       message=f"a parent was skipped: {reason}")
    promoted = await graphops.promote_children(conn, ids, now=now, worker=by)
    await graphops.insert_events(conn, events, at=now, worker=by)
    await audit.record(conn, by=by, action="skip", reason=reason, at=now, job_ids=ids,
                       target=audit.target(job_ids=ids))
    return ActionResult(changed=ids, followers=sorted({*revived, *promoted}))


async def rerun(
    conn: AsyncConnection,
    rules: Mapping[str, JobTypeRule],
    *,
    job_id: int | None,
    dealer_id: str | None,
    pipeline_id: int | None,
    by: str | None,
    reason: str | None,
    now: float,
) -> ActionResult:
    """Run a finished job again and re-arm every descendant (`retry from this job`), or
    a whole pipeline (store/pipelines.py): *pipeline_id*, or (*dealer_id* alone) the
    dealer's newest. Running jobs are left alone; attempts start again from zero."""
    pipeline = None
    if job_id is not None:
        roots = [job_id]
    else:
        pipeline, roots = await pipelines.resolve(conn, dealer_id=dealer_id,
                                                  pipeline_id=pipeline_id)
    below = await graphops.descendants(conn, roots)
    candidates = sorted({*roots, *below})
    movable = list((await conn.execute(
        select(jobs.c.id).where(
            jobs.c.id.in_(candidates), jobs.c.state != JobState.RUNNING
        ).order_by(jobs.c.id)
    )).scalars()) if candidates else []
    named = [i for i in movable if i in set(roots)]
    moved = await rearm_runnable(
        conn, rules, named, [i for i in movable if i not in set(roots)], now=now,
        message="operator rerun", by=by,
    )
    if moved.changed:
        await audit.record(
            conn, by=by, action="rerun", reason=reason, at=now,
            job_ids=[*moved.changed, *moved.followers],
            target=audit.target(job_ids=[job_id] if job_id is not None else None,
                                dealer_id=dealer_id, pipeline_id=pipeline),
        )
    return dataclasses.replace(moved, pipeline=pipeline)
