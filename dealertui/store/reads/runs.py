"""Past engine runs (`dealertui runs`, the last few in `status`), newest start first."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import RunSummary
from dealertui.store.schema import runs

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore


def run_id_of(worker_id: str) -> str:
    """The id a run's log lines carry: the random end of its worker id
    (`run-once:host:pid:3f9a2c` -> `3f9a2c`), unique enough to tell overlapping runs apart."""
    return worker_id.rsplit(":", 1)[-1]


async def last_runs(conn: AsyncConnection, limit: int) -> list[RunSummary]:
    """The *limit* runs that started last, newest first (ix_runs_started: a cron line every
    minute writes half a million rows a year)."""
    rows = await conn.execute(
        select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit))
    return [
        {
            "run": run_id_of(r.worker_id),
            "worker_id": r.worker_id,
            "kind": r.kind,
            "host": r.host,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "exit_code": r.exit_code,
            "stats": json.loads(r.stats) if r.stats else None,
        }
        for r in rows
    ]


async def run_history(store: JobStore, limit: int) -> list[RunSummary]:
    return await store.db.run(lambda conn: last_runs(conn, limit), write=False)
