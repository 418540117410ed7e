"""`status`: counts by state, by job type and by dealer (of the open jobs and the newest
finished job of each dealer and type: store/reads/current.py), pauses, workers, recent runs (the
JSON contract of `dealertui status --json`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import JobState, Paused, StoreStatus, empty_state_counts
from dealertui.store.reads.current import current_counts
from dealertui.store.reads.runs import last_runs
from dealertui.store.schema import controls, dealers, jobs, workers

#: how many engine runs `status` reports, newest first
LAST_RUNS_SHOWN = 5


async def status(conn: AsyncConnection, job_types: Iterable[str]) -> StoreStatus:
    """The status document; *job_types* (the configured ones) are listed even without jobs."""
    by_state = empty_state_counts()
    by_type: dict[str, dict[str, int]] = {t: empty_state_counts() for t in job_types}
    by_dealer: dict[str, dict[str, int]] = {
        d: empty_state_counts()
        for d in (await conn.execute(select(dealers.c.id).order_by(dealers.c.id))).scalars()
    }
    # every open job and the newest finished one per dealer and type, not the history
    for dealer_id, job_type, state, n in await current_counts(conn):
        if state not in by_state:
            continue
        by_state[state] += n
        by_type.setdefault(job_type, empty_state_counts())[state] += n
        by_dealer.setdefault(dealer_id, empty_state_counts())[state] += n
    pauses = await conn.execute(select(controls).where(controls.c.paused == 1))
    paused: Paused = {"global": False, "dealers": [], "types": [], "schedules": []}
    lists = {"dealer": paused["dealers"], "type": paused["types"],
             "schedule": paused["schedules"]}
    for p in pauses:
        if p.scope == "global":
            paused["global"] = True
        elif p.scope in lists:
            lists[p.scope].append(p.key)
    for names in lists.values():
        names.sort()
    worker_rows = await conn.execute(
        select(workers).where(workers.c.stopped_at.is_(None)).order_by(workers.c.id)
    )
    running_by: dict[str | None, int] = dict(
        (
            await conn.execute(
                select(jobs.c.locked_by, func.count())
                .where(jobs.c.state == JobState.RUNNING)
                .group_by(jobs.c.locked_by)
            )
        ).all()
    )
    recent = await last_runs(conn, LAST_RUNS_SHOWN)
    disabled = (await conn.execute(
        select(dealers.c.id).where(dealers.c.disabled_at.is_not(None))
        .order_by(dealers.c.id)
    )).scalars().all()
    return {
        "last_runs": recent,
        "disabled_dealers": list(disabled),
        "total": sum(by_state.values()),
        "by_state": by_state,
        "by_type": by_type,
        "by_dealer": by_dealer,
        "paused": paused,
        "workers": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "kind": w.kind,
                "started_at": w.started_at,
                "heartbeat_at": w.heartbeat_at,
                "running": running_by.get(w.id, 0),
            }
            for w in worker_rows
        ],
    }
