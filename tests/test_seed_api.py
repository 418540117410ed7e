"""The seed's manager methods on a real store, SQLite and Postgres: which jobs
`get_ready_jobs_for_dealer` returns and in what order, and what `reset_processing_stats`
forgets (test_embedding.py walks every method once through `dealertui.open`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from helpers import make_config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.model import Job, ProcessingStats
from dealertui.store import Intent, JobStore, open_store

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("repo_importable")]

OK = "tests.fixtures.handlers:ok"
#: the seed's four job types: homenet first, dealer_com and product_scrape after it
PIPELINE = {
    "homenet": {"priority": 1, "handler": OK},
    "dealer_com": {"priority": 2, "depends_on": ["homenet"], "handler": OK},
    "product_scrape": {"priority": 3, "depends_on": ["homenet"], "handler": OK},
    "url_shorten": {"priority": 4, "depends_on": ["product_scrape"], "handler": OK},
}
#: three independent types: all ready at once, ordered by priority alone
FLAT = {name: {"priority": prio, "handler": OK} for prio, name in enumerate("abc", 1)}




@asynccontextmanager
async def manager_on(db_url: str, job_types: dict[str, Any], **kwargs: Any
                     ) -> AsyncIterator[tuple[MultiDealerDependencyManager, JobStore]]:
    cfg = make_config(db_url, job_types, dealers=["d1", "d2"])
    store = await open_store(cfg, Intent.CREATE)
    try:
        yield MultiDealerDependencyManager(store, cfg, **kwargs), store
    finally:
        await store.close()


async def set_run_after(db_url: str, job_id: int, run_after: float) -> None:
    """Straight in SQL: a `ready` job that is not due yet is not a state any command makes
    on purpose, yet the store's claim skips one, and so must the seed's method."""
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE jobs SET run_after = :t WHERE id = :id"),
                               {"t": run_after, "id": job_id})
    finally:
        await engine.dispose()


def shown(jobs: list[Job]) -> list[tuple[str, str, str]]:
    return [(j.dealer_id, j.job_type, j.state) for j in jobs]


# -- get_ready_jobs_for_dealer ----------------------------------------------------------------


async def test_ready_jobs_are_that_dealers_ready_ones(db_url: str) -> None:
    async with manager_on(db_url, PIPELINE, only_dealers=["d1"]) as (manager, store):
        await manager.enqueue(["d1", "d2"])
        ready = await manager.get_ready_jobs_for_dealer("d1")
        assert all(isinstance(j, Job) for j in ready)
        assert shown(ready) == [("d1", "homenet", "ready")]  # the rest wait for it
        assert shown(await manager.get_ready_jobs_for_dealer("d2")) == [
            ("d2", "homenet", "ready")]
        assert await manager.get_ready_jobs_for_dealer("d9") == []

        stats = await manager.process_multi_dealer_jobs(limit=1)  # d1's homenet only
        assert (stats.total_jobs, stats.successful_jobs) == (1, 1)
        # homenet succeeded: its children are ready, in priority order; url_shorten waits
        assert shown(await manager.get_ready_jobs_for_dealer("d1")) == [
            ("d1", "dealer_com", "ready"), ("d1", "product_scrape", "ready")]
        assert shown(await manager.get_ready_jobs_for_dealer("d2")) == [
            ("d2", "homenet", "ready")]
        states = {(j.dealer_id, j.job_type): j.state for j in await store.list_jobs()}
        assert states[("d1", "homenet")] == "succeeded"


async def test_ready_jobs_come_in_claim_order_priority_then_id(db_url: str) -> None:
    async with manager_on(db_url, FLAT) as (manager, _store):
        first = await manager.enqueue(["d1"])
        second = await manager.enqueue(["d1"])  # a second pipeline: higher ids, same types
        ready = await manager.get_ready_jobs_for_dealer("d1")
        # by id alone this would be a, b, c, a, b, c
        assert [(j.job_type, j.priority) for j in ready] == [
            ("a", 1), ("a", 1), ("b", 2), ("b", 2), ("c", 3), ("c", 3)]
        by_id = {j.id: j.job_type for j in ready}
        assert sorted(by_id) == sorted(first + second)
        assert [j.id for j in ready][:2] == sorted(i for i in by_id if by_id[i] == "a")


async def test_a_ready_job_not_due_yet_is_left_out(db_url: str) -> None:
    async with manager_on(db_url, FLAT) as (manager, _store):
        await manager.enqueue(["d1"])
        ready = await manager.get_ready_jobs_for_dealer("d1")
        later = next(j for j in ready if j.job_type == "b")
        await set_run_after(db_url, later.id, time.time() + 3600)
        assert [j.job_type for j in await manager.get_ready_jobs_for_dealer("d1")] == ["a", "c"]
        await set_run_after(db_url, later.id, time.time() - 1)
        assert [j.job_type for j in await manager.get_ready_jobs_for_dealer("d1")] == [
            "a", "b", "c"]


# -- reset_processing_stats -------------------------------------------------------------------


async def test_reset_processing_stats_starts_the_count_afresh(db_url: str) -> None:
    async with manager_on(db_url, PIPELINE) as (manager, store):
        await manager.enqueue(["d1", "d2"])
        first = await manager.process_multi_dealer_jobs()
        assert (first.processed_jobs, first.successful_jobs, first.dealers_processed) == (8, 8, 2)
        assert set(first.by_dealer) == {"d1", "d2"} and first.processing_time_ms > 0
        assert len(manager.latencies_ms) == 8

        manager.reset_processing_stats()
        reset = manager.get_processing_stats()
        assert reset.to_dict() == ProcessingStats().to_dict()
        assert len(manager.latencies_ms) == 0
        assert first.processed_jobs == 8  # the stats a run returned are left as they were
        # the database is not the stats: every job stays succeeded
        assert {j.state for j in await store.list_jobs()} == {"succeeded"}

        await manager.enqueue(["d2"])
        second = await manager.process_multi_dealer_jobs()
        # without the reset these add up (12 jobs, 2 dealers: test_embedding.py)
        assert (second.total_jobs, second.processed_jobs, second.dealers_processed) == (4, 4, 1)
        assert set(second.by_dealer) == {"d2"}
        assert second.by_type == {t: {"succeeded": 1} for t in PIPELINE}
        assert len(manager.latencies_ms) == 4
        assert manager.get_processing_stats() is second


async def test_reset_before_any_run_is_harmless(db_url: str) -> None:
    async with manager_on(db_url, FLAT) as (manager, _store):
        manager.reset_processing_stats()
        assert manager.get_processing_stats().to_dict() == ProcessingStats().to_dict()
        await manager.enqueue(["d1"])
        stats = await manager.process_multi_dealer_jobs()
        assert (stats.processed_jobs, stats.dealers_processed) == (3, 1)
