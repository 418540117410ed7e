"""Schema and migration: create what is missing, bring an older schema up to date, refuse a
database that is not ours (another application's tables, a newer schema, no write access).

Tables and indexes themselves are declared in store/schema.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateColumn

from dealertui.errors import StoreUnavailable
from dealertui.store.db import Database
from dealertui.store.schema import (
    ADDED_COLUMNS,
    ADDED_INDEXES,
    DROPPED_INDEXES,
    SCHEMA_VERSION,
    jobs,
    meta,
    metadata,
    pipelines,
)


async def init_schema(db: Database) -> bool:
    """Create every table and index that is missing; True when the schema was new."""

    async def tx(conn: AsyncConnection) -> bool:
        if conn.dialect.name == "postgresql":
            # Two workers starting together must not both run CREATE TABLE.
            await conn.execute(text("SELECT pg_advisory_xact_lock(7262001)"))
        version = await read_version(conn, db)
        if version is not None:
            _check_version(db, version)
            if version < SCHEMA_VERSION:
                # changes so far added tables and columns and dropped indexes
                for name, dialects in DROPPED_INDEXES.items():
                    if conn.dialect.name in dialects:
                        await conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
                await _add_missing_columns(conn)
                await conn.run_sync(metadata.create_all)
                await conn.run_sync(_create_added_indexes)
                if version < 6:
                    await _backfill_pipelines(conn)
                await conn.execute(
                    update(meta).where(meta.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )
            return False
        await _refuse_foreign_tables(conn, db)
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
        return True

    return await db.run(tx)


async def _backfill_pipelines(conn: AsyncConnection) -> None:
    """Schema 6 keeps a row per pipeline and the newest job per dealer and type; make them
    for the jobs an older version enqueued (once: later enqueues write them)."""
    # jobs from before schema 5 have no pipeline_id: theirs is the first job of the same
    # dealer enqueued in the same transaction (one created_at), as pipelines.resolve tells it
    await conn.execute(text(
        "UPDATE jobs SET pipeline_id = (SELECT min(o.id) FROM jobs o WHERE o.dealer_id = "
        "jobs.dealer_id AND o.created_at = jobs.created_at AND o.pipeline_id IS NULL) "
        "WHERE pipeline_id IS NULL"))
    have = set((await conn.execute(select(pipelines.c.id))).scalars())
    found: dict[int, dict[str, Any]] = {}
    for r in await conn.execute(select(
        jobs.c.pipeline_id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.id, jobs.c.created_at,
        jobs.c.payload,
    ).order_by(jobs.c.id)):
        p = found.setdefault(r.pipeline_id, {
            "id": r.pipeline_id, "dealer_id": r.dealer_id, "types": set(),
            "first_job_id": r.id, "last_job_id": r.id, "jobs": 0, "by": None,
            "schedule": None, "payload": r.payload, "created_at": r.created_at})
        p["types"].add(r.job_type)
        p["last_job_id"] = r.id
        p["jobs"] += 1
    rows = [{**p, "types": ",".join(sorted(p["types"]))} for p in found.values()
            if p["id"] not in have]
    for i in range(0, len(rows), 5000):
        await conn.execute(insert(pipelines), rows[i:i + 5000])
    await conn.execute(text(
        "INSERT INTO newest_jobs (dealer_id, job_type, job_id) SELECT dealer_id, job_type, "
        "max(id) FROM jobs WHERE true GROUP BY dealer_id, job_type "
        "ON CONFLICT (dealer_id, job_type) DO NOTHING"))


def _create_added_indexes(sync: Any) -> None:
    """CREATE INDEX for each of ADDED_INDEXES an older schema lacks (create_all, which ran
    just before, made those of tables that are new)."""
    insp = inspect(sync)
    for table in metadata.tables.values():
        have = {i["name"] for i in insp.get_indexes(table.name)}
        for index in table.indexes:
            if index.name in ADDED_INDEXES and index.name not in have:
                index.create(sync)


async def _add_missing_columns(conn: AsyncConnection) -> None:
    """ALTER TABLE … ADD COLUMN for each of ADDED_COLUMNS an older schema lacks."""
    def missing(sync: Any) -> list[tuple[str, str]]:
        insp = inspect(sync)
        have = {t: {c["name"] for c in insp.get_columns(t)}
                for t in {t for t, _ in ADDED_COLUMNS} if insp.has_table(t)}
        return [(t, c) for t, c in ADDED_COLUMNS if t in have and c not in have[t]]

    for table, column in await conn.run_sync(missing):
        ddl = CreateColumn(metadata.tables[table].c[column]).compile(dialect=conn.dialect)
        await conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {ddl}"))


async def _refuse_foreign_tables(conn: AsyncConnection, db: Database) -> None:
    """A database without our meta table must not already hold tables we would create
    beside (create_all skips a table whose name exists, whatever its columns); a SQLite
    file is one application's, so there any table at all means it is not ours."""
    existing = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    clash = existing if conn.dialect.name == "sqlite" else existing & set(metadata.tables)
    if clash:
        raise db.foreign(clash)


async def check_writable(db: Database) -> None:
    """Raise StoreUnavailable (lasting) unless a write succeeds, in a transaction that is
    rolled back. A read-only file, a role without write privilege or a read-only standby
    answer every read, and an up-to-date schema needs no write: without this one, `init-db`
    would say "database ready" and a worker would start, then fail every claim."""
    refuse_unwritable(db)

    async def tx(conn: AsyncConnection) -> None:
        await conn.execute(update(meta).where(meta.c.key == "schema_version")
                           .values(value=meta.c.value))

    await db.rolling_back().run(tx)


def refuse_unwritable(db: Database) -> None:
    """StoreUnavailable when the file modes already say this user cannot write the file
    (checked before any connection, which would leave a -wal and -shm behind)."""
    refusal = db.write_refusal()
    if refusal is not None:
        raise StoreUnavailable(
            f"cannot write the database {db.url_description}: {refusal}.", lasting=True)


async def check_schema(db: Database) -> None:
    """StoreUnavailable unless the database holds a dealertui schema this version reads."""
    async def tx(conn: AsyncConnection) -> int | None:
        version = await read_version(conn, db)
        if version is None:  # not "run init-db" where init-db would refuse too
            await _refuse_foreign_tables(conn, db)
        return version

    version = await db.run(tx, write=False)
    if version is None:
        raise StoreUnavailable(
            f"the database {db.url_description} has no dealertui schema; "
            "run 'dealertui init-db' first."
        )
    _check_version(db, version)


def _check_version(db: Database, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the database {db.url_description} has schema version {version}, newer "
            f"than this dealertui supports ({SCHEMA_VERSION}); upgrade dealertui."
        )


async def read_version(conn: AsyncConnection, db: Database) -> int | None:
    """meta.schema_version, or None for a database without our meta table or row."""
    has_meta = await conn.run_sync(lambda sync: sync.dialect.has_table(sync, "meta"))
    if not has_meta:
        return None
    value = (
        await conn.execute(select(meta.c.value).where(meta.c.key == "schema_version"))
    ).scalar()
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise StoreUnavailable(
            f"the database {db.url_description} has an unreadable schema version "
            f"{value!r} in its meta table."
        ) from None
