"""The db_url fixture hands out a working database on both backends."""

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


@pytest.mark.anyio
async def test_db_url_connects(db_url: str) -> None:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1
            if db_url.startswith("postgresql"):
                version = (await conn.execute(text("show server_version_num"))).scalar_one()
                assert int(version) >= 130000  # DROP DATABASE ... WITH (FORCE)
    finally:
        await engine.dispose()
