"""Pipelines: enqueue (id allocation, prerequisite links) and finding a pipeline again.

A pipeline is the jobs one enqueue made for one dealer, named by the id of the first of them.
`jobs.pipeline_id` records it from schema 4 on. A job enqueued before has none; its pipeline
is then told the way enqueue made it: the dealer's jobs inserted in the same transaction,
which share one created_at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.errors import UsageError
from dealertui.model import (
    SATISFIED_STATES,
    Enqueued,
    EnqueueResult,
    JobState,
    Skipped,
)
from dealertui.store import audit, graphops, pending
from dealertui.store.graphops import Event
from dealertui.store.idlists import one_of
from dealertui.store.registry import existing_dealers
from dealertui.store.schema import job_deps, jobs, newest_jobs, pipelines
from dealertui.store.states import LINKABLE_STATES, QUIET_STATES


@dataclass(frozen=True, slots=True)
class JobTypeRule:
    """What the store needs to know of a job type to enqueue it."""

    priority: int
    depends_on: tuple[str, ...] = ()
    max_attempts: int = 5


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


def type_order(rules: Mapping[str, JobTypeRule], types: Sequence[str] | None) -> list[str]:
    """The job types of one pipeline (*types*, or all), parents before children, so each job
    can link to its in-pipeline parents; UsageError for an unknown type."""
    wanted = list(rules) if not types else list(dict.fromkeys(types))
    unknown = [t for t in wanted if t not in rules]
    if unknown:
        raise UsageError(
            f"unknown job type {unknown[0]!r} (known: {', '.join(sorted(rules))})."
        )
    order: list[str] = []
    seen: set[str] = set()

    def visit(t: str) -> None:
        if t in seen:
            return
        seen.add(t)
        for p in sorted(rules[t].depends_on, key=lambda x: (rules[x].priority, x)):
            if p in wanted:
                visit(p)
        order.append(t)

    for t in sorted(wanted, key=lambda x: (rules[x].priority, x)):
        visit(t)
    return order


async def enqueue(
    conn: AsyncConnection,
    rules: Mapping[str, JobTypeRule],
    order: Sequence[str],
    dealer_ids: Sequence[str],
    *,
    types: Sequence[str] | None,
    payload: Mapping[str, Any] | None,
    by: str | None,
    now: float,
    schedule: str | None = None,
    allow_duplicate: bool = True,
) -> EnqueueResult:
    """Enqueue one pipeline of the types *order* (see type_order) per dealer.

    Without *allow_duplicate*, a dealer that has a pipeline of the same job types with a job
    still to run is skipped (see pending.pending). The decision is taken under a lock per dealer
    (see pending.lock_dealers), so two enqueues
    at once never both see "nothing pending".

    Edges come from the job types' depends_on. A prerequisite type outside the pipeline
    links to the dealer's latest job of that type when it is unfinished or succeeded;
    otherwise the job is blocked with the reason "no successful <type> run".
    """
    wanted_dealers = list(dict.fromkeys(dealer_ids))
    payload_text = json.dumps(payload) if payload is not None else None
    known = await existing_dealers(conn, wanted_dealers)
    missing = [d for d in wanted_dealers if d not in known]
    if missing:
        raise UsageError(
            f"unknown dealer {missing[0]!r}; add it with 'dealertui dealers add "
            f"{missing[0]}' or list it under [[dealers]] in the config."
        )
    types_key = ",".join(sorted(order))
    skipped: list[Skipped] = []
    if not allow_duplicate and wanted_dealers:
        await pending.lock_dealers(conn, wanted_dealers)
        held = await pending.pending(conn, wanted_dealers, types_key, now=now)
        skipped = [Skipped(d, *held[d]) for d in wanted_dealers if d in held]
        wanted_dealers = [d for d in wanted_dealers if d not in held]
    external = sorted({p for t in order for p in rules[t].depends_on if p not in order})
    latest = await latest_jobs(conn, wanted_dealers, external)
    rows: list[dict[str, Any]] = []
    parents_of: list[list[tuple[str, int | None, str]]] = []
    for dealer_id in wanted_dealers:
        state_in_pipeline: dict[str, str] = {}
        for t in order:
            links: list[tuple[str, int | None, str]] = []
            state, reason = JobState.READY.value, None
            for p in rules[t].depends_on:
                if p in order:
                    links.append(("new", None, p))
                    pstate = state_in_pipeline[p]
                    if pstate == JobState.BLOCKED:
                        state, reason = JobState.BLOCKED.value, f"parent {p} is blocked"
                    elif state != JobState.BLOCKED:
                        state = JobState.WAITING.value
                    continue
                found = latest.get((dealer_id, p))
                if found is not None and found[1] in LINKABLE_STATES:
                    links.append(("old", found[0], p))
                    if found[1] not in SATISFIED_STATES and state != JobState.BLOCKED:
                        state = JobState.WAITING.value
                else:
                    state, reason = JobState.BLOCKED.value, f"no successful {p} run"
            state_in_pipeline[t] = state
            rule = rules[t]
            rows.append(
                {
                    "dealer_id": dealer_id,
                    "job_type": t,
                    "state": state,
                    "priority": rule.priority,
                    "attempts": 0,
                    "max_attempts": rule.max_attempts,
                    "run_after": now,
                    "created_at": now,
                    "updated_at": now,
                    "ready_at": now if state == JobState.READY else None,
                    "blocked_reason": reason,
                    "payload": payload_text,
                }
            )
            parents_of.append(links)
    if not rows:
        return EnqueueResult((), tuple(skipped))
    new_ids = await _allocate_job_ids(conn, len(rows))
    members: dict[str, list[int]] = {}  # a dealer's rows are together, in id order
    for row, job_id in zip(rows, new_ids, strict=True):
        row["id"] = job_id
        row["pipeline_id"] = members.setdefault(row["dealer_id"], [job_id])[0]
        if job_id != row["pipeline_id"]:
            members[row["dealer_id"]].append(job_id)
    await conn.execute(insert(jobs), rows)
    by_dealer_type = {
        (row["dealer_id"], row["job_type"]): job_id
        for row, job_id in zip(rows, new_ids, strict=True)
    }
    edges = []
    for row, job_id, links in zip(rows, new_ids, parents_of, strict=True):
        for kind, parent_id, ptype in links:
            pid = by_dealer_type[(row["dealer_id"], ptype)] if kind == "new" else parent_id
            edges.append({"child_id": job_id, "parent_id": pid})
    if edges:
        await conn.execute(insert(job_deps), edges)
    await conn.execute(insert(pipelines), [
        {"id": ids[0], "dealer_id": dealer_id, "types": types_key, "first_job_id": ids[0],
         "last_job_id": ids[-1], "jobs": len(ids), "by": by, "schedule": schedule,
         "payload": payload_text, "created_at": now}
        for dealer_id, ids in members.items()
    ])
    await conn.execute(text(_UPSERT_NEWEST), [
        {"dealer_id": d, "job_type": t, "job_id": i} for (d, t), i in by_dealer_type.items()
    ])
    # Only a job born blocked gets a job_events row: created_at on the row records the
    # enqueue of every other one (the happy path writes no events, docs/design.md).
    await graphops.insert_events(
        conn,
        [
            Event(job_id, row["dealer_id"], row["job_type"], None, row["state"],
                  message=row["blocked_reason"] or "enqueued")
            for row, job_id in zip(rows, new_ids, strict=True)
            if row["state"] not in QUIET_STATES
        ],
        at=now,
        worker=None,
    )
    await audit.record(
        conn, by=by if schedule is None else f"schedule {schedule}", action="enqueue",
        reason=None, at=now, job_ids=new_ids,
        target=audit.target(dealers_list=list(members), types=types),
    )
    return EnqueueResult(
        tuple(Enqueued(d, ids[0], tuple(ids)) for d, ids in members.items()), tuple(skipped)
    )


#: ids grow within one dealer's lock, so the newest insert is always the newest job
_UPSERT_NEWEST = (
    "INSERT INTO newest_jobs (dealer_id, job_type, job_id) VALUES (:dealer_id, :job_type, "
    ":job_id) ON CONFLICT (dealer_id, job_type) DO UPDATE SET job_id = excluded.job_id"
)


async def _allocate_job_ids(conn: AsyncConnection, n: int) -> list[int]:
    """Ids for *n* new jobs, so the insert can be one plain executemany.

    (INSERT … RETURNING with parameter order kept falls back to a row at a time on
    SQLite: 10,000 jobs take 1.6 s that way.)
    """
    if conn.dialect.name == "postgresql":
        rows = await conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) "
                 "FROM generate_series(1, :n)"),
            {"n": n},
        )
        return [r[0] for r in rows]
    # SQLite: this transaction holds the write lock (BEGIN IMMEDIATE), so max(id) is ours
    top = (await conn.execute(select(func.max(jobs.c.id)))).scalar() or 0
    return list(range(top + 1, top + 1 + n))


async def latest_jobs(
    conn: AsyncConnection, dealer_ids: Sequence[str], types: Sequence[str]
) -> dict[tuple[str, str], tuple[int, str]]:
    """(dealer, type) -> (id, state) of the dealer's newest job of each of *types*."""
    if not types or not dealer_ids:
        return {}
    rows = await conn.execute(
        select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.state)
        .join(newest_jobs, newest_jobs.c.job_id == jobs.c.id)
        .where(one_of(conn, "newest_jobs.dealer_id", dealer_ids),
               newest_jobs.c.job_type.in_(types))
    )
    return {(r.dealer_id, r.job_type): (r.id, r.state) for r in rows}


async def relink_prerequisites(
    conn: AsyncConnection, rules: Mapping[str, JobTypeRule], job_ids: Sequence[int]
) -> set[int]:
    """Give jobs that were blocked for lack of a prerequisite run an edge to the dealer's
    latest unfinished or succeeded run of that type; returns the ids that still lack one."""
    rows = (
        await conn.execute(
            select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type).where(
                jobs.c.id.in_(list(job_ids)), jobs.c.blocked_reason.like("no successful %")
            )
        )
    ).all()
    if not rows:
        return set()
    have = {
        (r.child_id, r.job_type)
        for r in await conn.execute(
            select(job_deps.c.child_id, jobs.c.job_type)
            .join(jobs, jobs.c.id == job_deps.c.parent_id)
            .where(job_deps.c.child_id.in_([r.id for r in rows]))
        )
    }
    wanted_types = sorted(
        {p for r in rows if r.job_type in rules for p in rules[r.job_type].depends_on}
    )
    latest = await latest_jobs(conn, sorted({r.dealer_id for r in rows}), wanted_types)
    edges = []
    unlinkable: set[int] = set()
    for r in rows:
        rule = rules.get(r.job_type)
        for p in rule.depends_on if rule else ():
            if (r.id, p) in have:
                continue
            found = latest.get((r.dealer_id, p))
            if found is None or found[1] not in LINKABLE_STATES:
                unlinkable.add(r.id)
                continue
            edges.append({"child_id": r.id, "parent_id": found[0]})
    if edges:
        await conn.execute(insert(job_deps), edges)
    return unlinkable
