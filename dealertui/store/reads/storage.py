"""`health --detailed`: how much history the database holds, read cheaply and read-only.

SQLite: the file's size with its -wal, row counts (exact up to COUNT_CAP rows, then the
span of the table's rowids: a count reads every row), the pages free inside the file and
the auto-vacuum mode.
Postgres: pg_database_size and the planner's row estimates (pg_class.reltuples, kept by
autovacuum), since an exact count reads every row. The oldest finished job is the first one
enqueued that has finished: the primary key finds it past the unfinished ones only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import TERMINAL_STATES, OldestFinished, Storage
from dealertui.store.db import Database
from dealertui.store.engines import sqlite_path
from dealertui.store.schema import metadata
from dealertui.store.states import as_sql

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

_AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}
#: rows counted exactly in a SQLite table (~10 ms); beyond, the count is estimated
COUNT_CAP = 100_000


async def storage(store: JobStore) -> Storage:
    """The database's size, rows per table and oldest finished job (one read transaction)."""
    path = sqlite_path(store.db.url)

    async def tx(conn: AsyncConnection) -> Storage:
        oldest = (await conn.execute(text(
            "SELECT id, dealer_id, job_type, state, finished_at FROM jobs "
            f"WHERE state IN {as_sql(TERMINAL_STATES)} ORDER BY id LIMIT 1"))).first()
        found = (OldestFinished(id=oldest.id, dealer_id=oldest.dealer_id,
                                job_type=oldest.job_type, state=oldest.state,
                                finished_at=oldest.finished_at) if oldest else None)
        if conn.dialect.name == "postgresql":
            size = (await conn.execute(text(
                "SELECT pg_database_size(current_database())"))).scalar_one()
            estimates: dict[str, float] = dict((await conn.execute(text(
                "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                "AND c.relkind = 'r' AND c.relname = ANY(:names)"),
                {"names": list(metadata.tables)})).all())
            # -1: never analysed yet (a new table): say 0, it is an estimate anyway
            rows = {t: max(int(estimates.get(t, 0)), 0) for t in metadata.tables}
            return Storage(dialect="postgresql", size_bytes=int(size), rows=rows,
                           rows_exact=False, rows_estimated=list(rows),
                           oldest_finished_job=found)
        rows, estimated = {}, []
        for name, table in metadata.tables.items():
            rows[name] = int((await conn.execute(text(
                f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT {COUNT_CAP + 1})"))
            ).scalar_one())
            if rows[name] > COUNT_CAP:
                estimated.append(name)
                if table.kwargs.get("sqlite_with_rowid", True):
                    # ids only grow; the gaps are what retention deleted, so this is an upper
                    # bound
                    rows[name] = int((await conn.execute(text(
                        f"SELECT max(rowid) - min(rowid) + 1 FROM {name}"))).scalar_one())
        pragma = {name: int((await conn.execute(text(f"PRAGMA {name}"))).scalar_one())
                  for name in ("freelist_count", "page_size", "auto_vacuum")}
        return Storage(dialect="sqlite", size_bytes=_file_size(path), rows=rows,
                       rows_exact=not estimated, rows_estimated=estimated,
                       oldest_finished_job=found,
                       free_pages=pragma["freelist_count"], page_size=pragma["page_size"],
                       auto_vacuum=_AUTO_VACUUM.get(pragma["auto_vacuum"], "unknown"))

    return await store.db.run(tx, write=False)


async def free_pages(store_or_db: JobStore | Database) -> tuple[int, int]:
    """(free pages, all pages) of a SQLite file with incremental auto-vacuum: what a vacuum
    can still hand back. (0, 0) for any other file or database."""
    db = store_or_db if isinstance(store_or_db, Database) else store_or_db.db
    if not db.is_sqlite:
        return 0, 0

    async def tx(conn: AsyncConnection) -> tuple[int, int]:
        mode = (await conn.execute(text("PRAGMA auto_vacuum"))).scalar_one()
        if _AUTO_VACUUM.get(mode) != "incremental":
            return 0, 0
        free = (await conn.execute(text("PRAGMA freelist_count"))).scalar_one()
        return int(free), int((await conn.execute(text("PRAGMA page_count"))).scalar_one())

    return await db.run(tx, write=False)


def _file_size(path: str | None) -> int:
    if path is None:
        return 0
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
