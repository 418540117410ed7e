"""The hot statements' fast path runs inside the caller's transaction, and its errors are the
ones SQLAlchemy would raise (so Database.run retries or words them as usual)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dealertui.store import JobStore, JobTypeRule
from dealertui.store.fastpath import fetch

RULES = {"homenet": JobTypeRule(1, ())}

pytestmark = pytest.mark.anyio


async def test_fetch_is_inside_the_transaction_and_rolls_back_with_it(db_url: str) -> None:
    store = await JobStore.open(db_url, RULES)
    try:
        await store.add_dealers([("d1", None)])

        class Undo(Exception):
            pass

        async def tx(conn):
            rows = await fetch(
                conn, "UPDATE dealers SET name = :name WHERE id = :id RETURNING id, name",
                {"name": "renamed", "id": "d1"},
            )
            assert [tuple(r) for r in rows] == [("d1", "renamed")]
            # SQLAlchemy on the same connection sees the fast path's write
            seen = (await conn.execute(text("SELECT name FROM dealers WHERE id = 'd1'"))).scalar()
            assert seen == "renamed"
            raise Undo

        with pytest.raises(Undo):
            await store.db.run(tx)
        [dealer] = await store.list_dealers()
        assert dealer.name is None  # rolled back together with the transaction

        async def no_rows(conn):
            return await fetch(conn, "UPDATE dealers SET name = NULL WHERE id = 'nobody'")

        assert list(await store.db.run(no_rows)) == []
    finally:
        await store.close()


async def test_fetch_raises_what_sqlalchemy_raises(db_url: str) -> None:
    """Same statement, same exception class, whichever path runs it: Database.run's retry and
    its one-sentence StoreUnavailable depend on SQLAlchemy's classes, not the driver's."""
    store = await JobStore.open(db_url, RULES)
    bad = "SELECT no_such_column FROM dealers"
    try:
        async with store.db.engine.connect() as conn:
            with pytest.raises(DBAPIError) as via_sqlalchemy:
                await conn.execute(text(bad))
        async with store.db.engine.connect() as conn:
            with pytest.raises(DBAPIError) as via_fetch:
                await fetch(conn, bad)
        assert type(via_fetch.value) is type(via_sqlalchemy.value)
        assert "no_such_column" in str(via_fetch.value)
    finally:
        await store.close()
