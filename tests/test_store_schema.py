"""The store's schema and status: the shape status() returns, init_schema idempotence, opening
without create, the upgrades of older schema versions, and forty thousand dealers in one call;
on SQLite and Postgres.
"""

from __future__ import annotations

import pytest
import storeops
from helpers import Clock
from jobstates import DEFAULT_RULES, T0, claim_ids, opened

from dealertui.errors import StoreUnavailable
from dealertui.model import ALL_STATES
from dealertui.store import JobStore, migrate
from dealertui.store.db import Database
from dealertui.store.schema import SCHEMA_VERSION

pytestmark = pytest.mark.anyio


# -- status -----------------------------------------------------------------------------------


async def test_status_shape(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock, dealers=("d1", "d2", "d3")) as store:
        empty = await store.status()
        assert empty["total"] == 0
        assert set(empty["by_state"]) == set(ALL_STATES)
        assert set(empty["by_state"].values()) == {0}
        assert set(empty["by_type"]) == set(DEFAULT_RULES)
        assert set(empty["by_dealer"]) == {"d1", "d2", "d3"}
        assert empty["paused"] == {"global": False, "dealers": [], "types": [],
                                   "schedules": []}
        assert empty["workers"] == []

        await store.enqueue(["d1", "d2"])
        await store.register_worker("w1", host="box", pid=123, kind="worker")
        await store.register_worker("w2", host="box", pid=124, kind="run-once")
        await store.unregister_worker("w2")
        await claim_ids(store, "w1", only_dealers=["d1"])
        await store.set_paused(True, dealer_id="d2")
        await store.set_paused(True, job_type="url_shorten")

        s = await store.status()
        assert s["total"] == 8
        assert s["by_state"] == {
            "waiting": 6, "ready": 1, "running": 1, "retrying": 0,
            "succeeded": 0, "failed": 0, "blocked": 0, "cancelled": 0, "skipped": 0,
        }
        assert list(s["by_state"]) == list(ALL_STATES)
        for name, counts in s["by_type"].items():
            assert set(counts) == set(ALL_STATES), name
        assert s["by_type"]["homenet"]["running"] == 1
        assert s["by_type"]["homenet"]["ready"] == 1
        assert s["by_type"]["url_shorten"]["waiting"] == 2
        assert s["by_dealer"]["d1"]["running"] == 1 and s["by_dealer"]["d1"]["waiting"] == 3
        assert s["by_dealer"]["d2"]["ready"] == 1
        assert s["by_dealer"]["d3"] == dict.fromkeys(ALL_STATES, 0)
        assert s["paused"] == {"global": False, "dealers": ["d2"], "types": ["url_shorten"],
                               "schedules": []}
        assert s["workers"] == [
            {
                "id": "w1", "host": "box", "pid": 123, "kind": "worker",
                "started_at": T0, "heartbeat_at": T0, "running": 1,
            }
        ]


# -- schema -----------------------------------------------------------------------------------


async def test_init_schema_is_idempotent(db_url: str) -> None:
    store = JobStore(Database(db_url), DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) is None
        assert await migrate.init_schema(store.db) is True
        assert await migrate.init_schema(store.db) is False
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        await migrate.check_schema(store.db)
    finally:
        await store.close()
    again = await JobStore.open(db_url, DEFAULT_RULES, create=False)
    try:
        assert await storeops.schema_version(again) == SCHEMA_VERSION
        assert await migrate.init_schema(again.db) is False
    finally:
        await again.close()


async def test_open_without_create_on_empty_database_fails_clearly(db_url: str) -> None:
    with pytest.raises(StoreUnavailable, match="init-db"):
        await JobStore.open(db_url, DEFAULT_RULES, create=False)


async def test_version_1_database_is_upgraded_on_first_use(db_url: str) -> None:
    """A database made by schema version 1 (no audit_log) gets the new table and version."""
    from sqlalchemy import text

    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        async with store.db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE audit_log"))
            await conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    finally:
        await store.close()
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"], by="alice@host")
        [entry] = await store.audit_entries()
        assert (entry["who"], entry["action"], entry["count"]) == ("alice@host", "enqueue", 4)
    finally:
        await store.close()


async def test_version_2_database_loses_the_state_index_on_upgrade(db_url: str) -> None:
    """Version 3 dropped ix_jobs_state_type (every transition paid for it), and on Postgres
    ix_jobs_dealer_type; an older database has them removed on first use, and its jobs run."""
    from sqlalchemy import inspect, text

    async def job_indexes(store: JobStore) -> set[str]:
        async with store.db.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: {ix["name"] for ix in inspect(sync).get_indexes("jobs")}
            )

    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        async with store.db.engine.begin() as conn:
            await conn.execute(text("CREATE INDEX ix_jobs_state_type ON jobs (state, job_type)"))
            if not db_url.startswith("sqlite"):
                await conn.execute(text(
                    "CREATE INDEX ix_jobs_dealer_type ON jobs (dealer_id, job_type, id)"))
            await conn.execute(text("UPDATE meta SET value = '2' WHERE key = 'schema_version'"))
        assert "ix_jobs_state_type" in await job_indexes(store)
    finally:
        await store.close()
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        names = await job_indexes(store)
        assert "ix_jobs_state_type" not in names
        assert {"ix_jobs_ready", "ix_jobs_running_dealer"} <= names
        # the newest-job-per-lane index stays where it is free (SQLite), not on Postgres
        assert ("ix_jobs_dealer_type" in names) == db_url.startswith("sqlite")
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"])
        claimed = await store.claim("w", 10, per_dealer=1, lease_s=30)
        assert [j.job_type for j in claimed.jobs] == ["homenet"]
    finally:
        await store.close()


async def test_version_3_database_gains_the_new_columns_on_upgrade(db_url: str) -> None:
    """Version 4 added jobs.claim_seq (the fencing token) and dealers.disabled_at; a version 3
    database without them gets them on first use, its jobs keep their rows and still run."""
    from sqlalchemy import inspect, text

    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"])
        async with store.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE jobs DROP COLUMN claim_seq"))
            await conn.execute(text("ALTER TABLE dealers DROP COLUMN disabled_at"))
            await conn.execute(text("UPDATE meta SET value = '3' WHERE key = 'schema_version'"))
    finally:
        await store.close()
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        async with store.db.engine.connect() as conn:
            cols = await conn.run_sync(lambda sync: {
                t: {c["name"] for c in inspect(sync).get_columns(t)} for t in ("jobs", "dealers")
            })
        assert "claim_seq" in cols["jobs"] and "disabled_at" in cols["dealers"]
        claimed = await store.claim("w", 10, per_dealer=1, lease_s=30)
        assert [j.job_type for j in claimed.jobs] == ["homenet"]
    finally:
        await store.close()


async def test_version_6_database_gains_the_job_list_indexes_on_upgrade(db_url: str) -> None:
    """Version 7 added ix_jobs_unhappy, ix_pipelines_created and ix_runs_started to tables
    version 6 had (create_all makes only new tables' indexes); a version 6 database gets them
    on first use, and its job list still answers."""
    from sqlalchemy import inspect, text

    from dealertui.store.reads.joblist import JobQuery, job_list
    from dealertui.store.schema import ADDED_INDEXES

    async def indexes(store: JobStore) -> set[str]:
        async with store.db.engine.connect() as conn:
            return await conn.run_sync(lambda sync: {
                ix["name"] for t in ("jobs", "pipelines", "runs")
                for ix in inspect(sync).get_indexes(t)})

    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"])
        async with store.db.engine.begin() as conn:
            for name in ADDED_INDEXES:
                await conn.execute(text(f"DROP INDEX {name}"))
            await conn.execute(text("UPDATE meta SET value = '6' WHERE key = 'schema_version'"))
        assert not set(ADDED_INDEXES) & await indexes(store)
    finally:
        await store.close()
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        assert set(ADDED_INDEXES) <= await indexes(store)
        listed = await job_list(store, JobQuery(dealer_id="d1"))
        assert [j.job_type for j in listed] == ["url_shorten", "product_scrape", "dealer_com",
                                                "homenet"]
    finally:
        await store.close()


async def test_forty_thousand_dealers_in_one_call(db_url: str) -> None:
    """A dealers file or `enqueue` of every dealer is one call with the whole list; an
    expanding IN of one parameter per dealer stopped at 32,767 on both backends (Postgres
    said "the number of query arguments cannot exceed 32767")."""
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        ids = [f"d{i:05d}" for i in range(40_000)]
        assert await store.add_dealers([(d, None) for d in ids]) == 40_000
        assert await store.add_dealers([(d, "again") for d in ids[:3]]) == 0
        new = await store.enqueue(ids, ["homenet"])
        assert len(new) == 40_000
        assert len(await store.enqueue(ids[:5], ["dealer_com"])) == 5  # links to the latest
    finally:
        await store.close()
