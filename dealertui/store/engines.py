"""URLs and engines for both dialects.

SQLite: WAL, synchronous=NORMAL, busy_timeout, and `BEGIN IMMEDIATE` for every writing
transaction — a deferred BEGIN that later upgrades to a write fails with SQLITE_BUSY at once,
without waiting for busy_timeout, so writers must take the lock up front.
Postgres: asyncpg, pre-ping, so a connection dropped by a restart is replaced, not reused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from dealertui.errors import StoreUnavailable
from dealertui.masking import mask_url
from dealertui.store.readonly import read_uri

SQLITE_BUSY_TIMEOUT_MS = 5000


def describe_url(url: str) -> str:
    """A short human name for the database: a path for SQLite, a masked URL otherwise."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return u.database or ":memory:"
    return mask_url(url).replace("+asyncpg", "")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for Postgres or :memory:)."""
    if not is_sqlite(url):
        return None
    db = make_url(url).database
    return None if not db or db == ":memory:" else os.path.abspath(db)


def create_engine(url: str, *, make_dirs: bool = True, read_only: bool = False) -> AsyncEngine:
    """An AsyncEngine for *url* with the per-dialect settings described above; with
    *make_dirs*, a SQLite file's missing directories are created (not for a command that
    must not create the database: it left empty directories behind). *read_only*: see
    _read_only_sqlite_engine."""
    if is_sqlite(url):
        database = make_url(url).database
        path = sqlite_path(url)
        if read_only and path is not None:
            return _read_only_sqlite_engine(path)
        if make_dirs and database and database != ":memory:":
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                # mkdir says "File exists" when a part of the path is a file
                reason = ("a part of its path is a file, not a directory"
                          if isinstance(exc, FileExistsError | NotADirectoryError)
                          else exc.strerror or str(exc))
                raise StoreUnavailable(
                    f"cannot create the directory for SQLite database {database}: {reason}."
                ) from None
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_size=8
        )
        _install_sqlite_hooks(engine)
        return engine
    return create_async_engine(
        url,
        pool_size=8,
        max_overflow=16,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Plan every execution with its own parameters. asyncpg prepares each statement and
        # Postgres switches to a generic plan after five runs; for the claim, whose best plan
        # depends on how many jobs are ready and for which dealers, the generic plan takes
        # 233 ms per claim against 25 ms re-planned (`dealertui bench`, 10,000 jobs).
        connect_args={
            "timeout": 10,
            "server_settings": {"plan_cache_mode": "force_custom_plan"},
        },
    )


def _read_only_sqlite_engine(path: str) -> AsyncEngine:
    """An engine for commands that only read: each connection is opened as readonly.read_uri
    says for this user at that moment (so no -shm or -wal is created where the user cannot
    write), and no pooling, so that a console left open sees the owner's later writes (an
    immutable connection would never look again), and no journal mode is set."""
    import aiosqlite

    async def connect() -> Any:
        uri = await anyio.to_thread.run_sync(read_uri, path)
        conn = aiosqlite.connect(uri or path, uri=bool(uri),
                                 timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        conn._thread.daemon = True  # as SQLAlchemy's own connect does
        return await conn

    engine = create_async_engine("sqlite+aiosqlite://", async_creator=connect,
                                 poolclass=NullPool)
    _install_sqlite_hooks(engine, journal=False)
    return engine


def _install_sqlite_hooks(engine: AsyncEngine, *, journal: bool = True) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own implicit BEGIN is always DEFERRED).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        if journal:  # a reader must not switch another application's file to WAL
            # Before WAL, whose switch writes the file's header: a new file then gives the
            # pages retention frees back (store/retention.py); on a file with tables it is
            # a no-op (only VACUUM changes it there, see `prune --vacuum`).
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("dealertui_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
