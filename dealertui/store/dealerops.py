"""A dealer's life after `dealers add`: disable, enable, remove; and forgetting dead workers.

Each public function is one transaction of the store it is given, audited like every other
operator action (audit.record; *by* None writes no audit row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.errors import UsageError
from dealertui.model import UNFINISHED_STATES, JobState
from dealertui.store import audit
from dealertui.store.schema import (
    breakers,
    controls,
    dealers,
    job_deps,
    job_events,
    jobs,
    newest_jobs,
    pipelines,
    workers,
)
from dealertui.text import plural

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: A worker whose heartbeat is older than this is forgotten (its row, not its audit trail):
#: killed workers never unregister, and `status` would list them for ever.
FORGET_WORKER_AFTER_S = 86400.0


@dataclass(frozen=True, slots=True)
class Removal:
    """What `dealers remove` did: the jobs it cancelled first, and every job it removed."""

    cancelled: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


async def _locked_dealer(conn: AsyncConnection, dealer_id: str) -> Any:
    """The dealer's row, locked on Postgres: a claim (FOR UPDATE OF d SKIP LOCKED) then skips
    the dealer, so no job of it starts while we look at its jobs. SQLite's write transaction
    holds the whole database already."""
    query = select(dealers).where(dealers.c.id == dealer_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise UsageError(f"unknown dealer {dealer_id!r}; see 'dealertui dealers list'.")
    return row


async def set_disabled(store: JobStore, dealer_id: str, disabled: bool, *,
                       by: str | None) -> bool:
    """Disable (never claimed, jobs kept) or enable a dealer; False when it already was."""
    now = store.clock()

    async def tx(conn: AsyncConnection) -> bool:
        row = await _locked_dealer(conn, dealer_id)
        if (row.disabled_at is not None) == disabled:
            return False
        await conn.execute(
            update(dealers).where(dealers.c.id == dealer_id)
            .values(disabled_at=now if disabled else None)
        )
        await audit.record(
            conn, by=by, action="disable-dealer" if disabled else "enable-dealer",
            target=f"dealer {dealer_id}", job_ids=[], reason=None, at=now,
        )
        return True

    return await store.db.run(tx)


async def disabled_dealers(store: JobStore) -> list[str]:
    async def tx(conn: AsyncConnection) -> list[str]:
        query = (select(dealers.c.id).where(dealers.c.disabled_at.is_not(None))
                 .order_by(dealers.c.id))
        return list((await conn.execute(query)).scalars())

    return await store.db.run(tx, write=False)


async def remove_dealer(store: JobStore, dealer_id: str, *, cancel_pending: bool,
                        by: str | None) -> Removal:
    """Remove a dealer with its jobs, their edges and events, its pause and its breakers.

    Refused while a job of it runs, and (without *cancel_pending*) while one is waiting,
    ready or retrying. With it, those are cancelled first, in the same transaction: the audit
    log records the cancel and the removal, and keeps every earlier row naming the dealer."""
    now = store.clock()

    async def tx(conn: AsyncConnection) -> Removal:
        await _locked_dealer(conn, dealer_id)
        rows = (await conn.execute(
            select(jobs.c.id, jobs.c.state).where(jobs.c.dealer_id == dealer_id)
        )).all()
        running = [r.id for r in rows if r.state == JobState.RUNNING]
        if running:
            shown = ", ".join(map(str, running[:5])) + (" …" if len(running) > 5 else "")
            raise UsageError(
                f"dealer {dealer_id} has {plural(len(running), 'running job')} ({shown}); "
                "let them finish or cancel them, then remove it."
            )
        pending = [r.id for r in rows if r.state in UNFINISHED_STATES]
        if pending and not cancel_pending:
            raise UsageError(
                f"dealer {dealer_id} has {plural(len(pending), 'unfinished job')} (waiting, "
                "ready or retrying); add --cancel-pending to cancel them and remove it."
            )
        ids = [r.id for r in rows]
        if pending:
            await audit.record(
                conn, by=by, action="cancel", target=f"dealer {dealer_id}", job_ids=pending,
                reason="dealers remove --cancel-pending", at=now,
            )
        if ids:
            # edges stay inside one dealer's jobs, so its children are among them too
            mine = select(jobs.c.id).where(jobs.c.dealer_id == dealer_id)
            await conn.execute(delete(job_deps).where(job_deps.c.child_id.in_(mine)))
            await conn.execute(delete(job_deps).where(job_deps.c.parent_id.in_(mine)))
            await conn.execute(delete(jobs).where(jobs.c.dealer_id == dealer_id))
        await conn.execute(delete(job_events).where(job_events.c.dealer_id == dealer_id))
        await conn.execute(delete(pipelines).where(pipelines.c.dealer_id == dealer_id))
        await conn.execute(delete(newest_jobs).where(newest_jobs.c.dealer_id == dealer_id))
        await conn.execute(
            delete(controls).where(controls.c.scope == "dealer", controls.c.key == dealer_id)
        )
        await conn.execute(delete(breakers).where(breakers.c.dealer_id == dealer_id))
        await conn.execute(delete(dealers).where(dealers.c.id == dealer_id))
        await audit.record(
            conn, by=by, action="remove-dealer", target=f"dealer {dealer_id}", job_ids=ids,
            reason=None, at=now,
        )
        return Removal(cancelled=pending, removed=ids)

    return await store.db.run(tx)


async def forget_dead_workers(conn: AsyncConnection, now: float) -> int:
    """Delete the workers silent for longer than FORGET_WORKER_AFTER_S; how many there were.
    Part of the lease rescue's transaction (every running worker runs it periodically)."""
    result = await conn.execute(
        delete(workers).where(workers.c.heartbeat_at < now - FORGET_WORKER_AFTER_S)
    )
    return int(result.rowcount or 0)
