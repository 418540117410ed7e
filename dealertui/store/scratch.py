"""A throwaway database for `dealertui bench`: a SQLite file in a temp dir, or a fresh
Postgres database created beside the one the URL names and dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from dealertui.store.db import Database


@asynccontextmanager
async def scratch_database(url: str | None, tmp_dir: str) -> AsyncIterator[str]:
    if url is None or make_url(url).get_backend_name() == "sqlite":
        yield f"sqlite+aiosqlite:///{os.path.join(tmp_dir, 'bench.db')}"
        return
    base = make_url(url)
    name = f"dealertui_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        raise Database(url).unavailable(exc) from None
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
