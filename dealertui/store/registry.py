"""Who is there: dealers as added (their later life is dealerops), workers and engine runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.errors import UsageError
from dealertui.model import DEALER_ID_HINT, dealer_name_problem, is_valid_dealer_id
from dealertui.store import audit
from dealertui.store.idlists import one_of
from dealertui.store.schema import dealers, runs, workers


def valid_dealers(items: Iterable[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """*items* (id, name) as a list, or UsageError naming the first invalid id or name."""
    rows = list(items)
    for dealer_id, name in rows:
        if not is_valid_dealer_id(dealer_id):
            raise UsageError(f"invalid dealer id {dealer_id!r}: {DEALER_ID_HINT}.")
        if (problem := dealer_name_problem(name)) is not None:
            raise UsageError(problem)
    return rows


async def add_dealers(
    conn: AsyncConnection, rows: Sequence[tuple[str, str | None]], *, by: str | None, now: float
) -> int:
    """Add dealers (id, name); an existing id keeps its jobs and takes the new name.
    With *by* (an operator), each dealer added and each name changed is audited."""
    existing = await existing_dealers(conn, [r[0] for r in rows])
    new = [
        {"id": i, "name": n, "created_at": now, "last_served_at": 0.0}
        for i, n in dict(rows).items()
        if i not in existing
    ]
    if new:
        await conn.execute(insert(dealers), new)
    for d in new:
        await audit.record(conn, by=by, action="add-dealer", target=f"dealer {d['id']}",
                           job_ids=[], reason=None, at=now)
    renamed = [(i, n) for i, n in rows if i in existing and n is not None]
    old = dict((await conn.execute(
        select(dealers.c.id, dealers.c.name)
        .where(one_of(conn, "dealers.id", [i for i, _ in renamed]))
    )).all()) if renamed else {}
    for i, n in renamed:
        if old.get(i) == n:
            continue  # the config's names, synced on every open: nothing changed
        await conn.execute(update(dealers).where(dealers.c.id == i).values(name=n))
        await audit.record(conn, by=by, action="rename-dealer",
                           target=f"dealer {i}: {old.get(i)!r} -> {n!r}",
                           job_ids=[], reason=None, at=now)
    return len(new)


async def existing_dealers(conn: AsyncConnection, dealer_ids: Sequence[str]) -> set[str]:
    """Which of *dealer_ids* are in the dealers table (the list may be every dealer)."""
    query = select(dealers.c.id).where(one_of(conn, "dealers.id", dealer_ids))
    return set((await conn.execute(query)).scalars())


async def register_worker(
    conn: AsyncConnection, worker_id: str, *, host: str, pid: int, kind: str,
    job_types: Sequence[str] | None, now: float,
) -> None:
    await conn.execute(workers.delete().where(workers.c.id == worker_id))
    await conn.execute(
        insert(workers).values(
            id=worker_id, host=host, pid=pid, kind=kind, started_at=now, heartbeat_at=now,
            job_types=None if job_types is None else json.dumps(sorted(job_types)),
        )
    )


async def unregister_worker(conn: AsyncConnection, worker_id: str, *, now: float) -> None:
    await conn.execute(update(workers).where(workers.c.id == worker_id).values(stopped_at=now))


async def record_run(
    conn: AsyncConnection, worker_id: str, kind: str, started_at: float,
    stats: Mapping[str, Any], *, now: float, host: str | None = None,
    exit_code: int | None = None,
) -> None:
    await conn.execute(
        insert(runs).values(
            worker_id=worker_id, kind=kind, started_at=started_at, finished_at=now,
            stats=json.dumps(dict(stats)), host=host, exit_code=exit_code,
        )
    )
